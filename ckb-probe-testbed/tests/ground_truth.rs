//! Runs both testbed binaries briefly and checks their ground truth for internal consistency and,
//! for `--max-iterations` runs, against the exact per-iteration formula.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STATIC_BIN: &str = env!("CARGO_BIN_EXE_ckb-probe-testbed");
const DYLIB_BIN: &str = env!("CARGO_BIN_EXE_ckb-probe-testbed-dylib");
const BINS: [(&str, &str); 2] = [(STATIC_BIN, "static"), (DYLIB_BIN, "dylib")];

const GET_FUNCS: [&str; 6] = [
    "rocksdb_get_pinned_cf",
    "rocksdb_transaction_get_pinned_cf",
    "rocksdb_transaction_get_for_update_cf",
    "rocksdb_get_pinned",
    "rocksdb_get",
    "rocksdb_get_cf",
];
const PUT_FUNCS: [&str; 5] = [
    "rocksdb_transaction_put_cf",
    "rocksdb_put",
    "rocksdb_put_cf",
    "rocksdb_writebatch_put_cf",
    "rocksdb_writebatch_put",
];
const DELETE_FUNCS: [&str; 5] = [
    "rocksdb_transaction_delete_cf",
    "rocksdb_delete",
    "rocksdb_delete_cf",
    "rocksdb_writebatch_delete_cf",
    "rocksdb_writebatch_delete",
];
const ITER_FUNCS: [&str; 5] = [
    "rocksdb_iter_seek",
    "rocksdb_iter_seek_for_prev",
    "rocksdb_iter_seek_to_first",
    "rocksdb_iter_seek_to_last",
    "rocksdb_iter_next",
];
const OTHER_TRACED: [&str; 2] = ["rocksdb_transaction_commit", "rocksdb_write"];
const HELPERS: [&str; 11] = [
    "rocksdb_optimistictransaction_begin",
    "rocksdb_transaction_destroy",
    "rocksdb_pinnableslice_value",
    "rocksdb_pinnableslice_destroy",
    "rocksdb_free",
    "rocksdb_writebatch_create",
    "rocksdb_writebatch_destroy",
    "rocksdb_create_iterator_cf",
    "rocksdb_iter_valid",
    "rocksdb_iter_get_error",
    "rocksdb_iter_destroy",
];
/// Functions with a column family argument; all others are reported under "default".
const CF_ARG: [&str; 12] = [
    "rocksdb_get_pinned_cf",
    "rocksdb_transaction_get_pinned_cf",
    "rocksdb_transaction_get_for_update_cf",
    "rocksdb_get_cf",
    "rocksdb_transaction_put_cf",
    "rocksdb_put_cf",
    "rocksdb_writebatch_put_cf",
    "rocksdb_transaction_delete_cf",
    "rocksdb_delete_cf",
    "rocksdb_writebatch_delete_cf",
    "rocksdb_create_iterator_cf",
    "rocksdb_compact_range_cf",
];

fn traced() -> impl Iterator<Item = &'static str> {
    GET_FUNCS
        .into_iter()
        .chain(PUT_FUNCS)
        .chain(DELETE_FUNCS)
        .chain(ITER_FUNCS)
        .chain(OTHER_TRACED)
}

struct Run {
    truth: Value,
    ready_pid: u32,
}

/// Runs a binary to completion; the ground truth is the last stdout line.
fn run(bin: &str, args: &[&str]) -> Run {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("spawning the testbed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}\nstderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "expected READY + JSON on stdout, got:\n{stdout}"
    );
    let ready_pid = lines[0]
        .strip_prefix("READY pid=")
        .expect("READY line")
        .parse()
        .expect("pid");
    let truth = serde_json::from_str(lines[1]).expect("ground truth parses");
    Run { truth, ready_pid }
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("missing/non-integer {field} in {v}"))
}

fn func<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["functions"]
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from ground truth"))
}

/// Checks that hold for every run.
fn check_consistency(t: &Value, link_mode: &str, threads: u64) {
    assert_eq!(t["link_mode"], link_mode);
    assert_eq!(u(t, "threads"), threads);
    assert!(t["duration_secs"].as_f64().unwrap() > 0.0);
    let functions = t["functions"].as_object().unwrap();
    for (name, f) in functions {
        // Totals are the sums over per_cf, field by field.
        for field in ["calls", "errors", "hits", "misses", "bytes"] {
            let sum: u64 = f["per_cf"]
                .as_object()
                .unwrap()
                .values()
                .map(|c| u(c, field))
                .sum();
            assert_eq!(sum, u(f, field), "{name}.{field}: per_cf sum != total");
        }
        for cf in f["per_cf"].as_object().unwrap().keys() {
            let ok = cf == "default" || cf.parse::<u32>().is_ok_and(|n| n <= 18);
            assert!(ok, "{name}: bad column family {cf}");
            if CF_ARG.contains(&name.as_str()) {
                assert_ne!(cf, "default", "{name} works on CKB column families");
            } else {
                assert_eq!(cf, "default", "{name} has no CF argument");
            }
        }
        assert_eq!(u(f, "errors"), 0, "{name}: unexpected RocksDB errors");
    }
    for name in traced().chain(HELPERS) {
        assert!(u(func(t, name), "calls") > 0, "{name} never called");
    }
    for name in GET_FUNCS {
        let f = func(t, name);
        assert_eq!(
            u(f, "hits") + u(f, "misses") + u(f, "errors"),
            u(f, "calls"),
            "{name}"
        );
    }
    for name in PUT_FUNCS.into_iter().chain(DELETE_FUNCS).chain(ITER_FUNCS) {
        let f = func(t, name);
        assert_eq!(u(f, "hits") + u(f, "misses"), 0, "{name}");
    }
    for name in DELETE_FUNCS.into_iter().chain(ITER_FUNCS) {
        assert_eq!(u(func(t, name), "bytes"), 0, "{name}");
    }
    // One latency sample per traced call.
    for name in traced() {
        let l = &t["latency_ns"][name];
        assert_eq!(
            u(l, "count"),
            u(func(t, name), "calls"),
            "{name} latency count"
        );
        assert!(
            u(l, "p50") <= u(l, "p90") && u(l, "p90") <= u(l, "p99") && u(l, "p99") <= u(l, "max"),
            "{name}: {l}"
        );
        assert!(u(l, "mean") <= u(l, "max"));
    }
    for name in HELPERS {
        assert!(t["latency_ns"].get(name).is_none(), "{name} is not timed");
    }
    // Every non-NULL pinnable slice is read once and destroyed once; every malloc'ed value freed.
    let pinned_hits: u64 = [
        "rocksdb_get_pinned_cf",
        "rocksdb_transaction_get_pinned_cf",
        "rocksdb_get_pinned",
    ]
    .iter()
    .map(|n| u(func(t, n), "hits"))
    .sum();
    assert_eq!(
        u(func(t, "rocksdb_pinnableslice_value"), "calls"),
        pinned_hits
    );
    assert_eq!(
        u(func(t, "rocksdb_pinnableslice_destroy"), "calls"),
        pinned_hits
    );
    let malloc_hits: u64 = [
        "rocksdb_get",
        "rocksdb_get_cf",
        "rocksdb_transaction_get_for_update_cf",
    ]
    .iter()
    .map(|n| u(func(t, n), "hits"))
    .sum();
    assert_eq!(u(func(t, "rocksdb_free"), "calls"), malloc_hits);
    // Object lifecycles balance.
    let calls = |n| u(func(t, n), "calls");
    assert_eq!(
        calls("rocksdb_optimistictransaction_begin"),
        calls("rocksdb_transaction_destroy")
    );
    assert_eq!(
        calls("rocksdb_writebatch_create"),
        calls("rocksdb_writebatch_destroy")
    );
    assert_eq!(
        calls("rocksdb_create_iterator_cf"),
        calls("rocksdb_iter_destroy")
    );
}

#[test]
fn short_timed_run_both_binaries() {
    for (bin, mode) in BINS {
        let r = run(bin, &["--duration", "1", "--threads", "2"]);
        let t = &r.truth;
        check_consistency(t, mode, 2);
        assert_eq!(u(t, "pid"), u64::from(r.ready_pid));
        assert!(u(t, "iterations") > 0);
        let d = t["duration_secs"].as_f64().unwrap();
        assert!((0.9..5.0).contains(&d), "duration {d}");
        // Default sizes: 32-byte keys, 100-byte values, no storm.
        let kv = 132;
        for name in PUT_FUNCS {
            let f = func(t, name);
            assert_eq!(u(f, "bytes"), u(f, "calls") * kv, "{name}");
        }
        for name in GET_FUNCS {
            let f = func(t, name);
            assert_eq!(u(f, "bytes"), u(f, "hits") * 100, "{name}");
        }
        let commit = func(t, "rocksdb_transaction_commit");
        assert_eq!(u(commit, "bytes"), u(commit, "calls") * (4 * kv + 32));
        assert!(t.get("storm").is_none());
        assert!(t["functions"].get("rocksdb_compact_range_cf").is_none());
    }
}

/// Expected calls per function for `threads` threads x `n` iterations (see workload.rs).
fn expected_calls(threads: u64, n: u64, all_hits: bool) -> Vec<(&'static str, u64)> {
    let v = n.div_ceil(8);
    let mut e = vec![
        ("rocksdb_optimistictransaction_begin", n),
        ("rocksdb_transaction_get_pinned_cf", 2 * n),
        ("rocksdb_transaction_get_for_update_cf", n),
        ("rocksdb_transaction_put_cf", 4 * n),
        ("rocksdb_transaction_delete_cf", n),
        ("rocksdb_transaction_commit", n),
        ("rocksdb_transaction_destroy", n),
        ("rocksdb_get_pinned_cf", 4 * n),
        ("rocksdb_writebatch_create", n + v),
        ("rocksdb_writebatch_put_cf", 3 * n),
        ("rocksdb_writebatch_delete_cf", n),
        ("rocksdb_write", n + v),
        ("rocksdb_writebatch_destroy", n + v),
        ("rocksdb_writebatch_put", 2 * v),
        ("rocksdb_writebatch_delete", v),
        ("rocksdb_create_iterator_cf", n),
        ("rocksdb_iter_seek", n),
        ("rocksdb_iter_valid", 3 * n),
        ("rocksdb_iter_next", 3 * n),
        ("rocksdb_iter_seek_for_prev", n),
        ("rocksdb_iter_seek_to_first", n),
        ("rocksdb_iter_seek_to_last", n),
        ("rocksdb_iter_get_error", n),
        ("rocksdb_iter_destroy", n),
        ("rocksdb_get", v),
        ("rocksdb_get_pinned", v),
        ("rocksdb_get_cf", v),
        ("rocksdb_put", v),
        ("rocksdb_put_cf", v),
        ("rocksdb_delete", v),
        ("rocksdb_delete_cf", v),
    ];
    if all_hits {
        e.push(("rocksdb_pinnableslice_value", 6 * n + v));
        e.push(("rocksdb_pinnableslice_destroy", 6 * n + v));
        e.push(("rocksdb_free", n + 2 * v));
    }
    e.into_iter().map(|(f, c)| (f, c * threads)).collect()
}

#[test]
fn max_iterations_matches_formula() {
    let (threads, n) = (3u64, 21u64);
    let v = n.div_ceil(8);
    for (bin, mode) in BINS {
        for (ratio, all_hits) in [("1.0", true), ("0", false)] {
            let r = run(
                bin,
                &[
                    "--duration",
                    "120",
                    "--threads",
                    "3",
                    "--max-iterations",
                    "21",
                    "--hit-ratio",
                    ratio,
                    "--key-size",
                    "40",
                ],
            );
            let t = &r.truth;
            assert_eq!(u(t, "iterations"), threads * n);
            let expected = expected_calls(threads, n, all_hits);
            let listed = t["functions"].as_object().unwrap();
            assert_eq!(
                listed.len(),
                expected.len(),
                "{mode} ratio {ratio}: {:?}",
                listed.keys().collect::<Vec<_>>()
            );
            for (name, calls) in &expected {
                assert_eq!(
                    u(func(t, name), "calls"),
                    *calls,
                    "{mode} ratio {ratio}: {name}"
                );
            }
            for name in GET_FUNCS {
                let f = func(t, name);
                let (hits, misses) = if all_hits {
                    (u(f, "calls"), 0)
                } else {
                    (0, u(f, "calls"))
                };
                assert_eq!((u(f, "hits"), u(f, "misses")), (hits, misses), "{name}");
                assert_eq!(u(f, "bytes"), hits * 100, "{name}");
            }
            let kv = 140;
            let bytes = |n| u(func(t, n), "bytes");
            assert_eq!(
                bytes("rocksdb_transaction_commit"),
                threads * n * (4 * kv + 40)
            );
            assert_eq!(
                bytes("rocksdb_write"),
                threads * (n * (3 * kv + 40) + v * (2 * kv + 40))
            );
            assert_eq!(bytes("rocksdb_transaction_put_cf"), threads * n * 4 * kv);
            assert_eq!(bytes("rocksdb_writebatch_put"), threads * v * 2 * kv);
            if all_hits {
                check_consistency(t, mode, threads);
            }
        }
    }
}

/// `--skip` leaves exactly the named iterator calls out (and the `iter_valid` checks that only
/// guard `iter_next`); every other count keeps the formula. The worker threads' CPU time is there.
#[test]
fn skip_leaves_out_only_the_named_calls() {
    let (threads, n) = (2u64, 16u64);
    let skipped = [
        "rocksdb_iter_next",
        "rocksdb_iter_seek_to_first",
        "rocksdb_iter_seek_to_last",
    ];
    let r = run(
        STATIC_BIN,
        &[
            "--threads",
            "2",
            "--max-iterations",
            "16",
            "--hit-ratio",
            "1.0",
            "--skip",
            &skipped.join(","),
        ],
    );
    let t = &r.truth;
    let listed = t["functions"].as_object().unwrap();
    let expected: Vec<(&str, u64)> = expected_calls(threads, n, true)
        .into_iter()
        .filter(|(f, _)| !skipped.contains(f) && *f != "rocksdb_iter_valid")
        .collect();
    assert_eq!(
        listed.len(),
        expected.len(),
        "{:?}",
        listed.keys().collect::<Vec<_>>()
    );
    for (name, calls) in &expected {
        assert_eq!(u(func(t, name), "calls"), *calls, "{name}");
    }
    let cpu = t["worker_cpu_secs"].as_f64().unwrap();
    assert!(
        cpu > 0.0 && cpu <= t["duration_secs"].as_f64().unwrap() * 2.0 + 0.05,
        "{t}"
    );
}

#[test]
fn start_file_and_sigterm() {
    let dir = std::env::temp_dir().join(format!("ckb-probe-testbed-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start = dir.join("go");
    let output = dir.join("truth.json");
    let db = dir.join("db");
    let mut child = Command::new(STATIC_BIN)
        .args(["--duration", "60", "--rate", "500"])
        .arg("--start-file")
        .arg(&start)
        .arg("--output")
        .arg(&output)
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("READY pid={}", child.id()));
    // Waiting for the start file: nothing measured yet, no output.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none() && !output.exists());
    std::fs::write(&start, b"").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let t0 = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert!(t["duration_secs"].as_f64().unwrap() < 30.0);
    // --rate 500 over ~0.7 s.
    let it = u(&t, "iterations");
    assert!((50..=1000).contains(&it), "iterations {it}");
    assert!(db.join("CURRENT").exists(), "--db directory is kept");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn storm_run_reports_compactions() {
    let r = run(
        DYLIB_BIN,
        &[
            "--duration",
            "3",
            "--threads",
            "2",
            "--storm-after",
            "1",
            "--storm-secs",
            "1",
            "--rate",
            "2000",
        ],
    );
    let t = &r.truth;
    check_consistency(t, "dylib", 2);
    let c = func(t, "rocksdb_compact_range_cf");
    assert!(u(c, "calls") > 0);
    assert_eq!(
        u(&t["latency_ns"]["rocksdb_compact_range_cf"], "count"),
        u(c, "calls")
    );
    let storm = &t["storm"];
    assert_eq!(storm["after_secs"].as_f64(), Some(1.0));
    assert!(u(&storm["storm"]["commit"], "count") > 0);
    assert!(u(&storm["normal"]["commit"], "count") > 0);
    // Storm values are 256 KiB - 1 MiB, and storm reads fetch them back: GET hits returned more
    // than the normal 100 bytes each.
    let (hits, bytes) = GET_FUNCS.iter().fold((0, 0), |(h, b), n| {
        (h + u(func(t, n), "hits"), b + u(func(t, n), "bytes"))
    });
    assert!(
        bytes >= hits * 100 + (256 << 10),
        "hits {hits} bytes {bytes}"
    );
}

/// Timing-dependent (needs a disk where fsync costs something): `cargo test -- --ignored`.
#[test]
#[ignore]
fn storm_commit_latency_is_over_5x() {
    let r = run(
        STATIC_BIN,
        &[
            "--duration",
            "8",
            "--threads",
            "2",
            "--storm-after",
            "3",
            "--storm-secs",
            "3",
        ],
    );
    let s = &r.truth["storm"];
    let normal = u(&s["normal"]["commit"], "mean_ns");
    let storm = u(&s["storm"]["commit"], "mean_ns");
    assert!(storm > 5 * normal, "storm {storm} ns vs normal {normal} ns");
}

#[test]
fn bad_flags_fail_cleanly() {
    for args in [
        &["--threads", "0"][..],
        &["--hit-ratio", "2"],
        &["--duration", "-1"],
        &["--key-size", "3"],
        &["--rate", "fast"],
        &["--storm-after", "1"],
        &["--no-such-flag"],
    ] {
        let out = Command::new(STATIC_BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    // A DB path that cannot be created: a runtime error, exit status 1, still no panic.
    let out = Command::new(DYLIB_BIN)
        .args(["--db", "/proc/self/no/such/dir", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn default_db_dir_is_removed() {
    let before = leftovers();
    let r = run(
        STATIC_BIN,
        &["--duration", "5", "--max-iterations", "3", "--threads", "1"],
    );
    let pid = r.ready_pid;
    let mine: Vec<PathBuf> = leftovers()
        .into_iter()
        .filter(|p| !before.contains(p) && p.to_string_lossy().contains(&format!("-{pid}-")))
        .collect();
    assert!(mine.is_empty(), "left behind: {mine:?}");
}

fn leftovers() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ckb-probe-testbed-"))
        })
        .collect()
}
