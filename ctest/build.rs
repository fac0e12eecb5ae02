//! Checks that the C header and `src/abi.rs` agree: sizes, alignments,
//! field offsets and constant values (ctest2 compiles a C program against
//! the checked-in header and compares it with the Rust definitions).

fn main() {
    let mut cfg = ctest2::TestGenerator::new();
    cfg.header("dist_worker.h")
        .include(concat!(env!("CARGO_MANIFEST_DIR"), "/../include"))
        .language(ctest2::Lang::C)
        .flag("-Wno-unused-parameter");
    cfg.generate("../src/abi.rs", "all.rs");
}
