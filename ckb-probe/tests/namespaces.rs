//! A node in a container: its own PID and mount namespaces, its binary visible only inside.
//! ckb-probe, on the host, opens the binary through `/proc/PID/exe`, attaches by the host PID,
//! and the kernel-side filter (host tgid) counts exactly that process.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use support::*;

#[test]
fn node_in_its_own_pid_and_mount_namespace_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // Inside the new mount namespace: a private tmpfs holding the node's only copy.
    let script = dir.path().join("run.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\nmkdir -p /mnt/ckb-probe-ns\nmount -t tmpfs none /mnt/ckb-probe-ns\n\
         cp \"$1\" /mnt/ckb-probe-ns/node\nshift\nexec /mnt/ckb-probe-ns/node \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = Command::new("unshare")
        .args(["--pid", "--mount", "--fork", "--mount-proc"])
        .arg(&script)
        .arg(testbed("static"))
        .args(["--threads", "1", "--duration", "2", "--rate", "1000"])
        .arg("--start-file")
        .arg(dir.path().join("start"))
        .arg("--output")
        .arg(dir.path().join("truth.json"))
        .arg("--db")
        .arg(dir.path().join("db"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let inner: u32 = loop {
        let l = lines.next().expect("no READY").unwrap();
        if let Some(p) = l.strip_prefix("READY pid=") {
            break p.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    assert_eq!(inner, 1, "the node is PID 1 of its own namespace");
    // The host PID: unshare's one child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let host_pid: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let exe = std::fs::read_link(format!("/proc/{host_pid}/exe")).unwrap();
    assert!(
        !exe.exists(),
        "{} should not be visible from the host's mount namespace",
        exe.display()
    );
    let tb = Testbed {
        child,
        pid: host_pid,
        dir,
    };
    let pid = host_pid.to_string();
    let probe = Probe::start(&["rocksdb", "--pid", &pid, "--json"]);
    tb.start();
    let truth = tb.finish();
    let (code, out, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let objs = parse_ndjson(&out);
    let s = summary(&objs);
    assert_counts_exact(s, &truth, "namespaced node");
}
