//! The bad-input table of USAGE, one case per row, for every tracing command: a one-line error
//! naming the problem and what to do, the documented exit code, no panic, and nothing attached.

mod support;

use std::process::{Command, Stdio};

use support::*;

const TRACING: [&str; 3] = ["rocksdb", "syscall", "net"];

/// Runs ckb-probe; returns (exit code, stderr) after checking the error's shape.
fn fails(args: &[&str]) -> (i32, String) {
    let out = Command::new(ckb_probe())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ckb-probe");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("ckb-probe: error:") || l.starts_with("error:")),
        "{args:?}: {err}"
    );
    assert!(out.stdout.is_empty(), "{args:?} printed a report");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn nonexistent_pid_kernel_thread_and_zombie() {
    let mut zombie = Command::new("true").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let z = zombie.id().to_string();
    for cmd in TRACING {
        let (code, err) = fails(&[cmd, "--pid", "999999999"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("999999999"), "{err}");
        let (code, err) = fails(&[cmd, "--pid", "2"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("kernel thread or a zombie"), "{err}");
        let (code, err) = fails(&[cmd, "--pid", &z]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("kernel thread or a zombie"), "{err}");
    }
    let _ = zombie.wait();
}

#[test]
fn process_without_rocksdb() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let (code, err) = fails(&["rocksdb", "--pid", &sleeper.id().to_string()]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no RocksDB C API"), "{err}");
}

/// Another user's process, ckb-probe run as an unprivileged user: not bad input, a privilege
/// problem (exit 1), and it says what to do.
#[test]
fn another_users_process_without_the_rights() {
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    for cmd in TRACING {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(ckb_probe())
            .args([cmd, "--pid", &pid, "-d", "1"])
            .output()
            .expect("setpriv (util-linux)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(err.contains("cannot inspect process"), "{cmd}: {err}");
        assert!(err.contains("root"), "{cmd}: {err}");
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn unreadable_or_foreign_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("script.sh");
    std::fs::write(&text, "#!/bin/sh\necho hi\n").unwrap();
    for (path, want) in [
        (text.to_str().unwrap(), "not an ELF file"),
        (dir.path().to_str().unwrap(), "is a directory"),
        ("/nonexistent/ckb", "no such file"),
    ] {
        let (code, err) = fails(&["symbols", path]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(want), "{path}: {err}");
    }
}

#[test]
fn bad_values_for_every_numeric_flag() {
    let mut cases: Vec<Vec<&str>> = Vec::new();
    for cmd in TRACING {
        for (flag, v) in [
            ("--interval", "0"),
            ("--interval", "-1"),
            ("--interval", "nan"),
            ("--duration", "0"),
            ("--duration", "inf"),
            ("--count", "0"),
            ("--count", "-2"),
            ("--pid", "abc"),
        ] {
            cases.push(vec![cmd, "--pid", "1", flag, v]);
        }
    }
    cases.extend([
        vec!["rocksdb", "--pid", "1", "--warmup", "-5"],
        vec!["rocksdb", "--pid", "1", "--threshold", "x"],
        vec!["rocksdb", "--pid", "1", "--with", "disk"],
        vec!["syscall", "--pid", "1", "--top", "0"],
        vec!["syscall", "--pid", "1", "--role", "nobody"],
        vec!["net", "--pid", "1", "--listen-port", "0"],
        vec!["net", "--pid", "1", "--listen-port", "70000"],
        vec!["net", "--pid", "1", "--rows", "-1"],
        vec!["net", "--pid", "1", "--warmup", "nan"],
        vec!["replay", "/dev/null", "--top", "0"],
    ]);
    for args in cases {
        let (code, err) = fails(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn unwritable_or_existing_output_path() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id().to_string();
    let missing = dir.path().join("no/such/dir/run.ndjson");
    let (code, err) = fails(&[
        "syscall",
        "--pid",
        &me,
        "--record",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be created"), "{err}");
    let existing = dir.path().join("run.ndjson");
    std::fs::write(&existing, "keep me\n").unwrap();
    let (code, err) = fails(&["net", "--pid", &me, "--record", existing.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me\n");
}

/// No tracefs, and none can be mounted (this kernel has no kprobes either, so the network
/// layer has no other way in): `check` warns and says how to mount it; `net` fails with one
/// line naming tracefs and the mount command, exit 1, nothing left; the layers that do not
/// need tracefs (uprobes and raw tracepoints go through perf and BPF links) still run.
#[test]
fn missing_tracefs() {
    let lists = probe_event_lists();
    let out = hiding(Hide::Tracefs, &["check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("] tracefs"))
        .expect("tracefs row");
    assert!(
        row.contains("WARN") && row.contains("not mounted"),
        "{text}"
    );
    assert!(
        text.contains("mount -t tracefs tracefs /sys/kernel/tracing"),
        "{text}"
    );

    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let (code, out, err, ids) =
        run_sampling_programs(hiding(Hide::Tracefs, &["net", "--pid", &pid, "-d", "1"]));
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].starts_with(
            "ckb-probe: error: the network layer cannot run here: tracefs is not mounted"
        ) && lines[0].contains("mount -t tracefs tracefs /sys/kernel/tracing"),
        "{err}"
    );
    assert_all_gone(&ids, "net without tracefs");

    let (code, _out, err, ids) = run_sampling_programs(hiding(
        Hide::Tracefs,
        &["syscall", "--pid", &pid, "-d", "1", "--json"],
    ));
    assert_eq!(code, 0, "syscall needs no tracefs: {err}");
    assert!(!ids.is_empty(), "{err}");
    assert_all_gone(&ids, "syscall without tracefs");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(probe_event_lists(), lists, "uprobe/kprobe_events changed");
}

/// No BTF: nothing ckb-probe loads needs CO-RE, so every layer runs; `check` warns with the
/// kernel option to enable, and the network layer says it reads sockets with the built-in
/// IPv4 layout (IPv6 peers of earlier connections unknown).
#[test]
fn missing_btf() {
    let out = hiding(Hide::Btf, &["check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let row = text.lines().find(|l| l.contains("] btf")).expect("btf row");
    assert!(row.contains("WARN") && row.contains("missing"), "{text}");
    assert!(text.contains("CONFIG_DEBUG_INFO_BTF=y"), "{text}");

    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let (code, out, err, ids) = run_sampling_programs(hiding(
        Hide::Btf,
        &["net", "--pid", &pid, "-d", "1", "--json"],
    ));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(
            "socket layout from built-in IPv4 layout (/sys/kernel/btf/vmlinux: No such file"
        ),
        "{err}"
    );
    let objs = parse_ndjson(&out.lines().map(str::to_string).collect::<Vec<_>>());
    assert_eq!(summary(&objs)["end"], "duration");
    assert_all_gone(&ids, "net without BTF");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}
