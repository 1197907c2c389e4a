//! How long `symbols` takes on the real CKB binary and on the testbed (median of 5 runs).
//! Run with `cargo bench -p ckb-probe --bench symbols`; it only prints figures.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

fn ckb_binary() -> Option<PathBuf> {
    let which = std::process::Command::new("which").arg("ckb").output().ok();
    let from_path = which
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/ckb"));
    from_path.into_iter().chain(home).find(|p| p.is_file())
}

fn testbed() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("ckb-probe-testbed"))
        .find(|p| p.is_file())
}

fn bench(label: &str, path: &Path) {
    let mut times: Vec<Duration> = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        match ckb_probe::symbols::analyze(path) {
            Ok(r) => last = Some(r),
            Err(e) => {
                println!("{label}: {e}");
                return;
            }
        }
        times.push(t.elapsed());
    }
    times.sort();
    let Some(r) = last else { return };
    println!(
        "{label}: {} ({:.1} MiB): median {:.1} ms (min {:.1}, max {:.1}); {} rocksdb_* functions, tier2 {}, tier3 {}",
        path.display(),
        r.size_bytes as f64 / f64::from(1u32 << 20),
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3,
        r.tier1.iter().filter(|t| t.present).count(),
        r.tier2_count,
        r.tier3_count,
    );
}

fn main() {
    match ckb_binary() {
        Some(p) => bench("ckb", &p),
        None => println!("ckb: not installed (`cargo install ckb --locked --version 0.210.0`)"),
    }
    match testbed() {
        Some(p) => bench("testbed", &p),
        None => println!("testbed: not built (`cargo build -p ckb-probe-testbed`)"),
    }
}
