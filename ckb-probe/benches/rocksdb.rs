//! What tracing RocksDB costs, measured on the testbed at its maximum rate (2 threads on this
//! machine's 2 cores) and, when installed, on a real CKB dev-chain node. Prints figures only:
//!   cargo bench -p ckb-probe --bench rocksdb
//! - ns added per traced call: per-thread time per traced call, with vs without ckb-probe;
//! - slow-event throughput: every call sent through the ring buffer (threshold 0), and losses;
//! - ckb-probe's own CPU and RSS at a 1 s interval;
//! - on a real CKB dev-chain node (when `ckb` is installed): the node's CPU over 30 s without
//!   and with ckb-probe (all three layers), and ckb-probe's own CPU and RSS.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Probe, Testbed, bench::cpu_over, ckb_node::CkbNode, parse_ndjson, summary, u};

const SECS: &str = "10";
const THREADS: f64 = 2.0;

fn traced_calls(truth: &serde_json::Value) -> u64 {
    truth["functions"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(f, _)| {
            truth["latency_ns"].get(f.as_str()).is_some() && *f != "rocksdb_compact_range_cf"
        })
        .map(|(_, v)| u(&v["calls"]))
        .sum()
}

/// Samples a process every second until it exits: (average CPU %, max RSS KiB, last RSS).
fn sample_until_exit(pid: u32) -> (f64, u64, u64) {
    let start = Instant::now();
    let (mut cpu, mut max_rss, mut last_rss) = (0.0, 0, 0);
    while let Some((c, rss)) = support::proc_usage(pid) {
        cpu = c;
        max_rss = max_rss.max(rss);
        last_rss = rss;
        std::thread::sleep(Duration::from_millis(200));
    }
    (
        100.0 * cpu / start.elapsed().as_secs_f64(),
        max_rss,
        last_rss,
    )
}

fn run(with_probe: Option<&[&str]>) -> (serde_json::Value, Option<(serde_json::Value, f64, u64)>) {
    let tb = Testbed::spawn(
        "static",
        &["--threads", "2", "--duration", SECS, "--rate", "0"],
    );
    let pid = tb.pid.to_string();
    let probe = with_probe.map(|extra| {
        let mut args = vec!["rocksdb", "--pid", &pid, "--json"];
        args.extend_from_slice(extra);
        Probe::start(&args)
    });
    let sampler = probe.as_ref().map(|p| {
        let id = p.child.id();
        std::thread::spawn(move || sample_until_exit(id))
    });
    tb.start();
    let truth = tb.finish();
    let probe_result = probe.map(|p| {
        let (_code, lines, _err) = p.wait(Duration::from_secs(60));
        let (cpu, max_rss, _) = sampler.unwrap().join().unwrap();
        let objs = parse_ndjson(&lines);
        (summary(&objs).clone(), cpu, max_rss)
    });
    (truth, probe_result)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: f64 = SECS.parse().unwrap();
    let (base, _) = run(None);
    let base_calls = traced_calls(&base) as f64;
    let (traced, p) = run(Some(&[]));
    let (s, cpu, rss) = p.unwrap();
    let traced_calls_n = traced_calls(&traced) as f64;
    let per_call = |calls: f64| THREADS * secs * 1e9 / calls;
    println!("RocksDB layer on the testbed (static, 2 threads, --rate 0, {SECS} s each):");
    println!(
        "  without ckb-probe: {:>10.0} traced calls/s  ({:.0} ns per call per thread)",
        base_calls / secs,
        per_call(base_calls)
    );
    println!(
        "  with ckb-probe:    {:>10.0} traced calls/s  ({:.0} ns per call per thread)",
        traced_calls_n / secs,
        per_call(traced_calls_n)
    );
    println!(
        "  added per traced call: {:.0} ns",
        per_call(traced_calls_n) - per_call(base_calls)
    );
    println!(
        "  counted by ckb-probe: {} (testbed: {}); lost events {}, unpaired {}",
        s["operations"]
            .as_object()
            .unwrap()
            .values()
            .map(|r| u(&r["count"]))
            .sum::<u64>(),
        traced_calls_n as u64,
        u(&s["lost_events"]),
        u(&s["unpaired"])
    );
    println!(
        "  ckb-probe itself at 1 s interval: {cpu:.1} % of one CPU, max RSS {:.1} MiB",
        rss as f64 / 1024.0
    );

    let (truth, p) = run(Some(&["--slow", "--threshold", "0"]));
    let (s, cpu, rss) = p.unwrap();
    let events = u(&s["slow_ops_total"]);
    let calls = traced_calls(&truth);
    println!("Slow-event path, threshold 0 (every traced call is an event):");
    println!(
        "  {:.0} events/s delivered, {} lost ({:.4} %), {} of {} calls",
        events as f64 / secs,
        u(&s["lost_events"]),
        100.0 * u(&s["lost_events"]) as f64 / calls.max(1) as f64,
        events,
        calls
    );
    println!(
        "  ckb-probe itself: {cpu:.1} % of one CPU, max RSS {:.1} MiB",
        rss as f64 / 1024.0
    );

    real_node();
}

fn real_node() {
    let has_ckb = std::env::var_os("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".cargo/bin/ckb"))
        .is_some_and(|p| p.exists());
    if !has_ckb {
        println!("Real CKB node: skipped (no ~/.cargo/bin/ckb; run scripts/ckb-node.sh install)");
        return;
    }
    let node = CkbNode::start();
    std::thread::sleep(Duration::from_secs(5));
    let without = cpu_over(node.pid, 30);
    let pid = node.pid.to_string();
    let probe = Probe::start(&[
        "rocksdb",
        "--pid",
        &pid,
        "--json",
        "--with",
        "syscall,net",
        "--duration",
        "32",
    ]);
    let id = probe.child.id();
    let sampler = std::thread::spawn(move || sample_until_exit(id));
    std::thread::sleep(Duration::from_secs(1));
    let with = cpu_over(node.pid, 30);
    let (_code, lines, _err) = probe.wait(Duration::from_secs(60));
    let (cpu, max_rss, _) = sampler.join().unwrap();
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    let ops: u64 = s["operations"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| u(&r["count"]))
        .sum();
    let syscalls: u64 = s["syscall"]["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| u(&r["count"]))
        .sum();
    println!("Real CKB 0.210.0 dev node mining ~3 blocks/s, 30 s each:");
    println!(
        "  node CPU without ckb-probe: {without:.1} %, with rocksdb+syscall+net: {with:.1} % (difference {:.1} points)",
        with - without
    );
    println!(
        "  traced: {ops} RocksDB calls, {syscalls} syscalls; lost events: rocksdb {}, net {}",
        u(&s["lost_events"]),
        u(&s["net"]["lost_events"])
    );
    println!(
        "  ckb-probe itself: {cpu:.1} % of one CPU, max RSS {:.1} MiB",
        max_rss as f64 / 1024.0
    );
}
