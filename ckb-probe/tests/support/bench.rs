//! What the benchmarks (`benches/*.rs`) share: their settings, sections and statistics.

use std::{
    process::Command,
    time::{Duration, Instant},
};

/// A positive integer setting from the environment, else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// The sections named after `--` (`cargo bench --bench X -- a b`): `None` when cargo only lists
/// benchmarks (`--list`), else a test of whether a section runs (all when none is named).
pub fn sections() -> Option<impl Fn(&str) -> bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return None;
    }
    let wanted: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    Some(move |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name))
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// (smallest, largest).
pub fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// CPU % (of one core) of `pid` over the next `secs` seconds, from /proc/PID/stat.
pub fn cpu_over(pid: u32, secs: u64) -> f64 {
    let (c0, _) = super::proc_usage(pid).unwrap_or((0.0, 0));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, _) = super::proc_usage(pid).unwrap_or((0.0, 0));
    100.0 * (c1 - c0) / t0.elapsed().as_secs_f64()
}

/// One line saying where and on what the figures were measured: CPUs, kernel, bpftrace, the
/// commit measured, and the load when the run started (other work on the machine).
pub fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let output = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let bpftrace =
        output(Command::new("bpftrace").arg("--version")).unwrap_or_else(|| "no bpftrace".into());
    let commit = output(
        Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(super::workspace_root()),
    )
    .unwrap_or_else(|| "unknown".into());
    format!(
        "Machine: {} CPUs ({cpu}), kernel {}, {bpftrace}; ckb-probe at commit {commit}; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        read("/proc/sys/kernel/osrelease").trim(),
        read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
