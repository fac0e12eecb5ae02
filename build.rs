//! Generates `dist_worker.h` with cbindgen into OUT_DIR (and into `include/`
//! when DIST_WORKER_UPDATE_HEADER is set), and gives the shared library its
//! SONAME.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed=src/abi.rs");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=DIST_WORKER_UPDATE_HEADER");

    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libdist_worker.so.{major}");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    // The C types, then the functions in the order a reader meets them.
    let mut builder = cbindgen::Builder::new().with_src(crate_dir.join("src/abi.rs"));
    for file in [
        "handle",
        "lifecycle",
        "register",
        "level",
        "mpi",
        "work",
        "observe",
        "log",
        "serve",
        "errors",
    ] {
        builder = builder.with_src(crate_dir.join(format!("src/ffi/{file}.rs")));
    }
    let bindings = builder
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    bindings.write_to_file(out_dir.join("dist_worker.h"));
    if std::env::var_os("DIST_WORKER_UPDATE_HEADER").is_some() {
        bindings.write_to_file(crate_dir.join("include/dist_worker.h"));
    }
}
