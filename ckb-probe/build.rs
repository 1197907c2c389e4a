//! Builds the kernel programs (ckb-probe-ebpf) for bpfel-unknown-none and leaves the ELF in
//! OUT_DIR, where `probe::load` embeds it: `ckb-probe` is one self-contained executable.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, Result};

/// Name of the eBPF binary target (distinct from the user binary's).
const BPF_BIN: &str = "ckb-probe-bpf";

fn main() -> Result<()> {
    println!("cargo:rerun-if-env-changed=CKB_PROBE_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    if env::var_os("CKB_PROBE_SKIP_EBPF").is_some_and(|v| v == "1") {
        // For `cargo check`/clippy on machines without the BPF toolchain: an empty object
        // makes `ckb-probe` fail at load time with a clear message instead of at build time.
        println!("cargo:warning=CKB_PROBE_SKIP_EBPF=1: embedding an empty eBPF object");
        fs::write(out_dir.join(BPF_BIN), [])?;
        return Ok(());
    }
    // The workspace root holds ckb-probe-ebpf; aya-build runs `cargo build` there through the
    // `rust-web` toolchain (Debian's rustc-web with a prebuilt bpfel core, see scripts/bootstrap.sh).
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?)
        .parent()
        .context("no workspace root")?
        .join("ckb-probe-ebpf");
    let root = root.to_str().context("non-UTF-8 path")?;
    for dep in ["src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={root}/{dep}");
    }
    println!("cargo:rerun-if-changed=../ckb-probe-common/src");
    // aya-ebpf and our programs need `asm_experimental_arch`; enabling unstable features for
    // these two crates only (not "1") keeps aya-build from adding -Z build-std: Debian's
    // prebuilt bpfel core is used instead.
    // SAFETY: build scripts are single-threaded.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf,ckb_probe_bpf") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ckb-probe-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom("rust-web"),
    )
    .context(
        "building the eBPF programs failed; run scripts/bootstrap.sh to install the BPF toolchain",
    )
}
