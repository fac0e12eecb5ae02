//! The checked-in header must be exactly what the build generates, and its
//! version macros must match Cargo.toml.

#[test]
fn checked_in_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/dist_worker.h"));
    let checked_in = include_str!("../include/dist_worker.h");
    assert!(
        generated == checked_in,
        "include/dist_worker.h is stale; refresh it with `DIST_WORKER_UPDATE_HEADER=1 cargo build`"
    );
}

#[test]
fn version_macros_match_the_package() {
    use dist_worker::abi::*;
    let v: Vec<u32> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        v,
        vec![
            DIST_WORKER_VERSION_MAJOR,
            DIST_WORKER_VERSION_MINOR,
            DIST_WORKER_VERSION_PATCH
        ]
    );
}
