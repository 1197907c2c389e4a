//! Links RocksDB differently into the two binaries (the library itself declares the C functions
//! without `#[link]`):
//! - `ckb-probe-testbed`: Debian's `librocksdb.a` plus its compression libraries, so that the
//!   `rocksdb_*` functions end up in the executable's own `.symtab`, as in the CKB node;
//! - `ckb-probe-testbed-dylib`: `-lrocksdb`, i.e. `librocksdb.so` (DT_NEEDED).
//!
//! `CKB_PROBE_TESTBED_ROCKSDB_LIB_DIR` overrides the directory holding `librocksdb.a`/`.so`
//! (default: Debian's multiarch directory for the target).

use std::env;
use std::path::PathBuf;

const STATIC_DEPS: &[&str] = &[
    "-lstdc++",
    "-lpthread",
    "-lsnappy",
    "-llz4",
    "-lzstd",
    "-lbz2",
    "-lz",
    "-lm",
    "-ldl",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CKB_PROBE_TESTBED_ROCKSDB_LIB_DIR");
    let lib_dir = match env::var_os("CKB_PROBE_TESTBED_ROCKSDB_LIB_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
            PathBuf::from(format!("/usr/lib/{arch}-linux-gnu"))
        }
    };
    let archive = lib_dir.join("librocksdb.a");
    if !archive.exists() {
        eprintln!(
            "error: {} not found; install Debian's librocksdb-dev (scripts/bootstrap.sh) or set \
             CKB_PROBE_TESTBED_ROCKSDB_LIB_DIR",
            archive.display()
        );
        std::process::exit(1);
    }
    println!("cargo:rerun-if-changed={}", archive.display());

    let bin = "ckb-probe-testbed";
    println!("cargo:rustc-link-arg-bin={bin}={}", archive.display());
    for dep in STATIC_DEPS {
        println!("cargo:rustc-link-arg-bin={bin}={dep}");
    }

    let bin = "ckb-probe-testbed-dylib";
    println!("cargo:rustc-link-arg-bin={bin}=-L{}", lib_dir.display());
    println!("cargo:rustc-link-arg-bin={bin}=-lrocksdb");
}
