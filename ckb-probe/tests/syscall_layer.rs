//! The syscall layer against `ckb-probe-sysbed`: threads named like a CKB node's (compaction,
//! flush, verify_blocks, tokio, rayon, ChainService, other) make known numbers of known system
//! calls; the counts per role and syscall that the raw tracepoints report must equal the
//! sysbed's ground truth exactly, and a 20 ms nanosleep must land in its latency bucket.

mod support;
mod sysbed;

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;
use support::*;
use sysbed::Sysbed;

/// Runs the sysbed (after ckb-probe attached) under `ckb-probe syscall --pid P ARGS`; returns
/// (ground truth, stdout lines, stderr).
fn traced_run(sysbed_args: &[&str], probe_args: &[&str]) -> (Value, Vec<String>, String) {
    let sb = Sysbed::spawn(sysbed_args);
    let pid = sb.pid.to_string();
    let mut args = vec!["syscall", "--pid", &pid];
    args.extend_from_slice(probe_args);
    let probe = Probe::start(&args);
    sb.start();
    let truth = sb.finish();
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "ckb-probe failed: {stderr}");
    assert!(
        stderr.contains("exited"),
        "no target-exit message: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (truth, lines, stderr)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

#[test]
fn exact_counts_per_role_and_syscall() {
    let (truth, lines, _) = traced_run(&[], &["--json", "--interval", "0.2"]);
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    assert_eq!(s["end"], "target_exited");

    // Every (role, syscall) pair the sysbed controls: calls, errors, bytes, waits.
    let roles = truth["roles"].as_object().expect("truth roles");
    assert_eq!(roles.len(), 7, "{truth}");
    for (role, calls) in roles {
        for (call, t) in calls.as_object().unwrap() {
            let p = &s["roles"][role][call];
            assert!(p.is_object(), "{role}/{call} missing in the probe's output");
            assert_eq!(u(&p["count"]), u(&t["calls"]), "{role}/{call} count");
            assert_eq!(u(&p["errors"]), u(&t["errors"]), "{role}/{call} errors");
            if call == "pwrite64" || call == "pread64" {
                assert_eq!(u(&p["bytes"]), u(&t["bytes"]), "{role}/{call} bytes");
                assert!(u(&t["bytes"]) > 0);
            }
            if call == "futex" {
                assert_eq!(u(&p["waits"]), u(&t["waits"]), "{role}/{call} waits");
            }
        }
    }
    // The central promise: one syscall, told apart by who made it.
    let pw = |role: &str| u(&s["roles"][role]["pwrite64"]["count"]);
    assert_eq!(
        (pw("compaction"), pw("flush"), pw("verify_blocks")),
        (400, 100, 50)
    );
    for role in ["flush", "verify_blocks"] {
        let r = &s["roles"][role]["fdatasync"];
        assert!(r["p99_us"].is_number(), "{role} fdatasync P99: {r}");
    }
    // Durability barriers: only the two sysbed roles call fdatasync/fsync at all.
    assert_eq!(u(&s["derived"]["fdatasync_calls"]), 30);
    assert!(f(&s["derived"]["fdatasync_p99_us"]) > 0.0);
    // Seven worker threads started while traced, each seen from its own side.
    assert_eq!(u(&s["threads_started"]), 7, "threads_started");
    assert_eq!(u(&s["stats_full"]), 0);
    assert_eq!(u(&s["hist_full"]), 0);

    // A known slow syscall lands in its bucket: P50 of the 20 ms sleeps within the bucket
    // width (12.5 %) of the sysbed's own median; the average within 2 % (the sysbed's clock
    // also sees the syscall entry and any preemption around it).
    let mut sleeps: Vec<u64> = truth["nanosleep_ns"]
        .as_array()
        .unwrap()
        .iter()
        .map(u)
        .collect();
    sleeps.sort_unstable();
    assert_eq!(sleeps.len(), 10);
    let median_us = sleeps[(sleeps.len() - 1) / 2] as f64 / 1_000.0;
    let mean_us = sleeps.iter().sum::<u64>() as f64 / sleeps.len() as f64 / 1_000.0;
    let ns = s["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "nanosleep")
        .expect("nanosleep row");
    let (p50, avg) = (f(&ns["p50_us"]), f(&ns["avg_us"]));
    eprintln!(
        "nanosleep: probe P50 {p50:.1} us avg {avg:.1} us; sysbed median {median_us:.1} us mean {mean_us:.1} us"
    );
    assert!(
        (p50 - median_us).abs() <= 0.125 * median_us,
        "P50 {p50} vs {median_us}"
    );
    assert!(
        (avg - mean_us).abs() <= 0.02 * mean_us + 100.0,
        "avg {avg} vs {mean_us}"
    );
    assert!(f(&ns["max_us"]) >= p50 * 0.9);

    // Interval deltas add up to the summary, per role and syscall.
    let intervals: Vec<&Value> = objs.iter().filter(|o| o["type"] == "interval").collect();
    assert!(intervals.len() >= 2, "expected several intervals");
    let mut summed: BTreeMap<(String, String), u64> = BTreeMap::new();
    for o in &intervals {
        for (role, calls) in o["roles"].as_object().unwrap() {
            for (call, r) in calls.as_object().unwrap() {
                *summed.entry((role.clone(), call.clone())).or_default() += u(&r["count"]);
            }
        }
    }
    for (role, calls) in s["roles"].as_object().unwrap() {
        for (call, r) in calls.as_object().unwrap() {
            let got = summed
                .get(&(role.clone(), call.clone()))
                .copied()
                .unwrap_or(0);
            assert_eq!(got, u(&r["count"]), "{role}/{call}: intervals vs summary");
        }
    }

    // Documented shape: numbers, not strings; units in names.
    for o in &objs {
        for k in [
            "timestamp",
            "pid",
            "interval_secs",
            "syscalls",
            "roles",
            "derived",
        ] {
            assert!(!o[k].is_null(), "missing {k}: {o}");
        }
        assert!(o["unpaired"].is_u64());
        for r in o["syscalls"].as_array().unwrap() {
            for k in ["nr", "count", "errors"] {
                assert!(r[k].is_u64(), "{k}: {r}");
            }
            for k in ["calls_per_sec", "total_us"] {
                assert!(r[k].is_number(), "{k}: {r}");
            }
            // Calls that never return have no latency.
            let timed = r["name"] != "exit" && r["name"] != "exit_group";
            for k in ["avg_us", "p50_us", "p99_us", "max_us"] {
                assert_eq!(r[k].is_number(), timed, "{k}: {r}");
            }
            assert!(r["name"].is_string());
        }
        let d = &o["derived"];
        for k in ["epoll_wakes_per_sec", "futex_calls", "fdatasync_calls"] {
            assert!(d[k].is_number(), "derived.{k}: {d}");
        }
    }
    let pw_row = s["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pwrite64")
        .unwrap();
    assert!(pw_row["bytes"].is_u64());
    assert!(
        s["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "getppid")
            .unwrap()["bytes"]
            .is_null()
    );
}

/// The default (table) view answers "whose pwrite64 is it?" without any flag.
#[test]
fn default_view_splits_io_by_role() {
    let (_truth, lines, _) = traced_run(&[], &["--interval", "10"]);
    let text = lines.join("\n");
    assert!(text.contains("CKB Syscall Monitor"), "{text}");
    assert!(text.contains("File I/O by thread role"), "{text}");
    // The summary's I/O table: pwrite64 rows for the three roles that write.
    let summary = &text[text.find("Summary over").expect("summary")..];
    let io = &summary[summary.find("File I/O by thread role").unwrap()..];
    let mut role_rows: Vec<(String, String)> = Vec::new();
    let mut current = String::new();
    for line in io.lines() {
        let cells: Vec<&str> = line.split('│').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        if !cells[1].is_empty() {
            current = cells[1].to_string();
        }
        role_rows.push((current.clone(), cells[2].to_string()));
    }
    for role in ["compaction", "flush", "verify_blocks"] {
        assert!(
            role_rows.contains(&("pwrite64".into(), role.into())),
            "no pwrite64 row for {role}: {io}"
        );
    }
    assert!(role_rows.contains(&("fdatasync".into(), "flush".into())));
    assert!(summary.contains("Futex:") && summary.contains("fdatasync+fsync: 30 calls"));
}

#[test]
fn role_filter_and_by_role_views() {
    let (_t, lines, _) = traced_run(&[], &["--role", "compaction", "--interval", "10"]);
    let text = lines.join("\n");
    let summary = &text[text.find("Summary over").expect("summary")..];
    assert!(summary.contains("role compaction"), "{summary}");
    assert!(summary.contains("pwrite64") && summary.contains("pread64"));
    assert!(!summary.contains("getppid"), "{summary}");
    assert!(!summary.contains("nanosleep"), "{summary}");

    let (_t, lines, _) = traced_run(&[], &["--by-role", "--top", "3", "--interval", "10"]);
    let text = lines.join("\n");
    let summary = &text[text.find("Summary over").expect("summary")..];
    assert!(summary.contains("By thread role"), "{summary}");
    for role in [
        "compaction (",
        "verify_blocks (",
        "tokio (",
        "rayon (",
        "other (",
    ] {
        assert!(summary.contains(role), "{role}: {summary}");
    }
}

/// SIGINT ends a run cleanly: exit 0, a summary, and none of the layer's programs stay loaded.
#[test]
fn sigint_detaches_everything() {
    let sb = Sysbed::spawn(&["--bench", "30"]);
    let pid = sb.pid.to_string();
    let probe = Probe::start(&["syscall", "--pid", &pid, "--json"]);
    sb.start();
    assert!(
        probe.line(Duration::from_secs(5)).is_some(),
        "no interval output"
    );
    let during = loaded_prog_names();
    for p in ["syscall_enter", "syscall_exit"] {
        assert!(during.iter().any(|n| n == p), "{p} not loaded: {during:?}");
    }
    let ids = prog_ids_of(probe.child.id());
    assert!(!ids.is_empty(), "no programs held");
    probe.signal(libc::SIGINT);
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    assert_eq!(s["end"], "signal");
    assert!(u(&s["roles"]["other"]["getppid"]["count"]) > 0);
    assert_all_gone(&ids, "after SIGINT");
    sb.kill();
}

#[test]
fn bad_input_is_reported_not_panicked() {
    for args in [
        vec!["syscall", "--pid", "999999999"],
        vec!["syscall", "--pid", "1", "--interval", "0"],
        vec!["syscall", "--pid", "1", "--duration=-1"],
        vec!["syscall", "--pid", "1", "--top", "0"],
        vec!["syscall", "--pid", "1", "--count", "0"],
        vec!["syscall", "--pid", "1", "--role", "compactor"],
    ] {
        let out = std::process::Command::new(ckb_probe())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("ckb-probe: error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The role list is in the message.
    let out = std::process::Command::new(ckb_probe())
        .args(["syscall", "--pid", "1", "--role", "x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify_blocks"));
    // Conflicting flags are a usage error (clap), also exit 2.
    let out = std::process::Command::new(ckb_probe())
        .args(["syscall", "--by-role", "--role", "flush"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Prints (does not assert) the cost of the probe per system call: getppid calls per second
/// of one thread without and with the layer attached. Also checks the count at that rate.
#[test]
fn benchmark_overhead_per_syscall() {
    let secs = "3";
    let sb = Sysbed::spawn(&["--bench", secs]);
    sb.start();
    let base = sb.finish();
    let base_rate = f(&base["bench"]["calls_per_sec"]);

    let (traced, lines, _) = traced_run(&["--bench", secs], &["--json", "--interval", "10"]);
    let objs = parse_ndjson(&lines);
    let s = summary(&objs);
    let traced_rate = f(&traced["bench"]["calls_per_sec"]);
    assert_eq!(
        u(&s["roles"]["other"]["getppid"]["count"]),
        u(&traced["bench"]["calls"]),
        "getppid count at full speed"
    );
    let overhead = 1e9 / traced_rate - 1e9 / base_rate;

    // The tracepoints fire for every process: what a process that is not the target pays.
    let target = Sysbed::spawn(&[]);
    let tpid = target.pid.to_string();
    let probe = Probe::start(&["syscall", "--pid", &tpid, "--json"]);
    let other = Sysbed::spawn(&["--bench", secs]);
    other.start();
    let other_rate = f(&other.finish()["bench"]["calls_per_sec"]);
    probe.signal(libc::SIGINT);
    let (code, _, stderr) = probe.wait(Duration::from_secs(10));
    assert_eq!(code, 0, "{stderr}");
    target.kill();
    let filtered = 1e9 / other_rate - 1e9 / base_rate;

    eprintln!(
        "BENCH getppid, one thread, {secs} s: untraced {base_rate:.0} calls/s ({:.0} ns/call); \
         traced {traced_rate:.0} calls/s ({:.0} ns/call): overhead {overhead:.0} ns per traced \
         syscall; another process traced: {other_rate:.0} calls/s, {filtered:.0} ns per syscall \
         of untraced processes",
        1e9 / base_rate,
        1e9 / traced_rate
    );
}
