//! Least privilege: a non-root user holding only the capability set USAGE lists for a layer
//! (file capabilities on a copy of the binary) traces a node of another user; once attached,
//! the process keeps only what the layer still needs (CapEff). The RocksDB layer's uprobes go
//! through uprobe_multi links, which need no CAP_SYS_ADMIN (perf-event uprobes do).

mod support;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use support::{exporter::Exporter, *};

/// Starts `ckb-probe ARGS` as user nobody from a copy of the binary carrying `caps`.
fn as_nobody(
    dir: &std::path::Path,
    caps: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    support::as_nobody(dir, caps)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)")
}

/// The union of CapEff over every thread of `pid`: capabilities are per thread, and a thread
/// spawned before the drop (an HTTP server, a terminal reader) would keep its own.
fn cap_eff(pid: u32) -> u64 {
    let mut eff = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap()
            .trim();
        eff |= u64::from_str_radix(hex, 16).unwrap();
    }
    eff
}

/// The union of the layers' minimal sets (INSTALL, section 3; deploy/systemd's unit).
const ALL_LAYERS: &str = "cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep";

const CAP_SYS_PTRACE: u64 = 1 << 19;

#[test]
fn minimal_capability_sets_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    for (layer, caps, args, kept) in [
        (
            "rocksdb",
            "cap_bpf,cap_perfmon,cap_sys_ptrace+ep",
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
        let mut child = as_nobody(dir.path(), caps, &all, &[]);
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
            "rocksdb" => {
                assert_eq!(s["uprobes"], "uprobe_multi", "{layer}: {s}");
                assert_eq!(
                    u(&s["functions"]["rocksdb_get"]["count"]),
                    u(&truth["functions"]["rocksdb_get"]["calls"]),
                    "{layer}"
                )
            }
            "syscall" => assert!(
                s["syscalls"].as_array().is_some_and(|a| !a.is_empty()),
                "{layer}: {s}"
            ),
            _ => assert_eq!(s["path"], "tracepoints", "{layer}: {s}"),
        }
    }
}

/// Without CAP_SYS_ADMIN this kernel refuses perf-event uprobes (forced here, as on a kernel
/// without uprobe_multi links): the RocksDB functions are reported as not traced, with the
/// reason, instead of silently counting nothing.
#[test]
fn perf_event_uprobes_without_sys_admin_are_reported() {
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
        &[("CKB_PROBE_UPROBES", "perf_event")],
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

/// The exporter and the overview, with every layer, as a non-root user holding the union of
/// the minimal sets: they attach (the exporter's counts are checked) and then keep only
/// CAP_SYS_PTRACE in every thread, the HTTP server's and the terminal's included.
#[test]
fn export_and_overview_keep_only_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let tb = Testbed::spawn(
        "static",
        &["--threads", "1", "--duration", "3", "--rate", "1000"],
    );
    let pid = tb.pid.to_string();
    let export = Exporter::spawn({
        let mut cmd = support::as_nobody(dir.path(), ALL_LAYERS);
        cmd.args([
            "export",
            "--pid",
            &pid,
            "--listen",
            "127.0.0.1:0",
            "--warmup",
            "0",
        ]);
        cmd
    });
    let seen = export.stderr();
    assert_eq!(cap_eff(export.child.id()), CAP_SYS_PTRACE, "export: {seen}");
    assert!(
        seen.contains("tracing rocksdb, syscall, net of PID"),
        "not every layer attached as nobody: {seen}"
    );
    tb.start();
    let truth = tb.finish();
    std::thread::sleep(Duration::from_millis(1500));
    let (_, _, metrics) = export.get("/metrics", None);
    assert!(
        metrics.contains("ckb_probe_syscall_calls_total{"),
        "no system calls counted as nobody"
    );
    let get_calls = metrics
        .lines()
        .find(|l| {
            l.starts_with("ckb_probe_rocksdb_calls_total{")
                && l.contains("function=\"rocksdb_get\"")
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no rocksdb_get calls in {metrics}"));
    assert_eq!(
        get_calls as u64,
        u(&truth["functions"]["rocksdb_get"]["calls"]),
        "exporter's rocksdb_get calls as nobody"
    );
    let stderr = export.stderr();
    assert_eq!(export.stop(), 0, "export: {stderr}");

    // The overview needs a terminal: `script` gives it one.
    let tb = Testbed::spawn(
        "static",
        &["--threads", "1", "--duration", "30", "--rate", "500"],
    );
    let bin = dir.path().join("ckb-probe");
    let cmd = format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups {} overview --pid {} --warmup 0",
        bin.display(),
        tb.pid
    );
    // Killing `script` on a failure closes the terminal: the overview ends on its SIGHUP.
    let mut tui = Reaped(
        Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("script (util-linux)"),
    );
    tb.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let probe_pid = loop {
        let found = std::fs::read_dir("/proc").unwrap().find_map(|e| {
            let p: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            (std::fs::read_link(format!("/proc/{p}/exe")).ok()? == bin).then_some(p)
        });
        if let Some(p) = found
            && std::fs::read_to_string(format!("/proc/{p}/status"))
                .is_ok_and(|s| s.contains("NoNewPrivs:\t1"))
        {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "overview did not attach"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    let eff = cap_eff(probe_pid);
    unsafe { libc::kill(probe_pid as i32, libc::SIGTERM) };
    let _ = tui.0.wait();
    assert_eq!(eff, CAP_SYS_PTRACE, "overview: CapEff {eff:#x}");
}

/// A child killed if the test fails before it is waited for: a left-over exporter would keep
/// its probes, and the lock on BPF tests its parent held, for ever.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
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
