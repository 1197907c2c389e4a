//! Least privilege: a non-root user holding only the capability set USAGE lists for a layer
//! (file capabilities on a copy of the binary) traces a node of another user; once attached,
//! the process keeps only what the layer still needs (CapEff).

mod support;

use std::{
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    time::Duration,
};

use support::*;

/// Starts `ckb-probe ARGS` as user nobody from a copy of the binary carrying `caps`.
fn as_nobody(dir: &std::path::Path, caps: &str, args: &[&str]) -> std::process::Child {
    let bin = dir.join("ckb-probe");
    if !bin.exists() {
        std::fs::copy(ckb_probe(), &bin).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let st = Command::new("setcap")
        .arg(caps)
        .arg(&bin)
        .status()
        .expect("setcap (libcap2-bin)");
    assert!(st.success(), "setcap {caps}");
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)")
}

fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

const CAP_SYS_PTRACE: u64 = 1 << 19;

#[test]
fn minimal_capability_sets_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    for (layer, caps, args, kept) in [
        (
            "rocksdb",
            "cap_bpf,cap_perfmon,cap_sys_admin,cap_sys_ptrace+ep",
            vec!["rocksdb"],
            0,
        ),
        (
            "syscall",
            "cap_bpf,cap_perfmon,cap_sys_ptrace+ep",
            vec!["syscall"],
            0,
        ),
        (
            "net",
            "cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep",
            vec!["net"],
            CAP_SYS_PTRACE,
        ),
    ] {
        let tb = Testbed::spawn(
            "static",
            &["--threads", "1", "--duration", "3", "--rate", "1000"],
        );
        let pid = tb.pid.to_string();
        let mut all = args.clone();
        all.extend(["--pid", &pid, "--json"]);
        if layer != "syscall" {
            all.extend(["--warmup", "0"]);
        }
        let mut child = as_nobody(dir.path(), caps, &all);
        // Attached and running: what it holds now.
        std::thread::sleep(Duration::from_secs(2));
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "{layer}: exited early with {caps}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tb.start();
        let eff = cap_eff(child.id());
        assert_eq!(eff, kept, "{layer}: CapEff {eff:#x} while tracing");
        let truth = tb.finish();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{layer} with {caps}: {err}");
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        let objs = parse_ndjson(&lines);
        let s = summary(&objs);
        match layer {
            "rocksdb" => assert_eq!(
                u(&s["functions"]["rocksdb_get"]["count"]),
                u(&truth["functions"]["rocksdb_get"]["calls"]),
                "{layer}"
            ),
            "syscall" => assert!(
                s["syscalls"].as_array().is_some_and(|a| !a.is_empty()),
                "{layer}: {s}"
            ),
            _ => assert_eq!(s["path"], "tracepoints", "{layer}: {s}"),
        }
    }
}

/// Without CAP_SYS_ADMIN this kernel refuses perf-event uprobes: the RocksDB functions are
/// reported as not traced, with the reason, instead of silently counting nothing.
#[test]
fn uprobes_without_sys_admin_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let tb = Testbed::spawn(
        "static",
        &["--threads", "1", "--duration", "1", "--rate", "500"],
    );
    let pid = tb.pid.to_string();
    let child = as_nobody(
        dir.path(),
        "cap_bpf,cap_perfmon,cap_sys_ptrace+ep",
        &["rocksdb", "--pid", &pid, "--json", "-d", "2"],
    );
    tb.start();
    let _ = tb.finish();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not traced") || err.contains("could not be loaded or attached"),
        "{err}"
    );
}

/// The systemd unit of deploy/ is valid for systemd (`systemd-analyze verify`), pointing at the
/// binary under test.
#[test]
fn systemd_unit_verifies() {
    let unit =
        std::fs::read_to_string(workspace_root().join("deploy/systemd/ckb-probe-export.service"))
            .unwrap();
    assert!(unit.contains("NoNewPrivileges=yes") && unit.contains("AmbientCapabilities="));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckb-probe-export.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/ckb-probe", ckb_probe().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}
