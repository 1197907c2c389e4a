//! `ckb-probe check` end to end on this machine (tests run as root here).

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ckb-probe");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run ckb-probe")
}

/// Runs with `--json`, checks there is exactly one object, returns it and the exit code.
fn json(args: &[&str]) -> (Value, Option<i32>) {
    let out = run(args);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "one JSON line: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(v.is_object());
    (v, out.status.code())
}

fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {r}"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn machine_is_ready() {
    let (r, code) = json(&["check", "--json"]);
    assert!(r["kernel_release"].as_str().is_some_and(|k| !k.is_empty()));
    for c in r["checks"].as_array().expect("checks") {
        assert!(c["name"].is_string() && c["detail"].is_string(), "{c}");
        assert!(["ok", "warn", "fail", "info"].contains(&c["status"].as_str().expect("status")));
        assert!(c.get("hint").is_some());
        if c["status"] == "fail" || c["status"] == "warn" {
            assert!(c["hint"].is_string(), "a {} needs a hint: {c}", c["status"]);
        }
    }
    if !is_root() {
        eprintln!("not root: only the shape of the report is checked");
        return;
    }
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(code, Some(0));
    assert_eq!(check(&r, "uprobes")["status"], "ok");
    assert_eq!(check(&r, "privileges")["status"], "ok");
    assert_eq!(check(&r, "bpf program types")["status"], "ok");
    assert_eq!(check(&r, "bpf map types")["status"], "ok");
    assert_eq!(check(&r, "btf")["status"], "ok");
    let kprobes = check(&r, "kprobes");
    if Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        assert_eq!(kprobes["status"], "ok");
    } else if !Path::new("/sys/kernel/tracing/kprobe_events").exists() {
        // This machine's kernel has CONFIG_KPROBES unset.
        assert_eq!(kprobes["status"], "info");
        assert!(
            kprobes["detail"]
                .as_str()
                .is_some_and(|d| d.contains("unavailable"))
        );
    }

    let human = run(&["check"]);
    assert_eq!(human.status.code(), Some(0));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("[ ok ] kernel"), "{text}");
    assert!(text.contains("ready: yes"), "{text}");
}

#[test]
fn target_without_rocksdb() {
    let mut sleep = Command::new("sleep").arg("30").spawn().expect("sleep");
    let (r, code) = json(&["check", "--json", "--pid", &sleep.id().to_string()]);
    sleep.kill().expect("kill");
    let _ = sleep.wait();
    let link = check(&r, "rocksdb linkage");
    assert_eq!(link["status"], "fail", "{r}");
    assert!(
        link["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("none")),
        "{link}"
    );
    assert!(link["hint"].is_string());
    assert_eq!(r["ready"], false);
    assert_eq!(code, Some(1));
    assert!(
        ["ok", "warn", "info"]
            .contains(&check(&r, "target seccomp")["status"].as_str().expect("s"))
    );
}

#[test]
fn dead_pid_is_bad_input() {
    for args in [
        &["check", "--pid", "999999999"][..],
        &["check", "--json", "--pid", "999999999"][..],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("999999999") && err.contains("no process"),
            "{err}"
        );
        assert!(!err.contains("panicked"));
        assert!(out.stdout.is_empty());
    }
}

/// The static testbed: an existing build, or one made now in a separate target directory
/// (the outer `cargo test` may hold the main one's lock).
fn testbed() -> PathBuf {
    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/ckb-probe")
        .to_path_buf();
    let own = target.join("ckb-probe-tests");
    if let Some(p) = [
        target.join("debug"),
        target.join("release"),
        own.join("debug"),
    ]
    .iter()
    .map(|d| d.join("ckb-probe-testbed"))
    .find(|p| p.is_file())
    {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "ckb-probe-testbed",
            "--bins",
            "--manifest-path",
        ])
        .arg(manifest)
        .arg("--target-dir")
        .arg(&own)
        .status()
        .expect("run cargo build -p ckb-probe-testbed");
    assert!(status.success(), "building the testbed failed");
    own.join("debug").join("ckb-probe-testbed")
}

#[test]
fn rocksdb_target() {
    let tb = testbed();
    let dir = tempfile::tempdir().expect("tempdir");
    let go = dir.path().join("go");
    let mut child = Command::new(&tb)
        .args(["--duration", "0.2", "--threads", "1", "--start-file"])
        .arg(&go)
        .arg("--db")
        .arg(dir.path().join("db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("testbed");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("READY");
    assert!(line.starts_with("READY"), "{line}");
    let (r, code) = json(&["check", "--json", "--pid", &child.id().to_string()]);
    std::fs::write(&go, b"").expect("start");
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
    let _ = child.wait();

    assert_eq!(check(&r, "target")["status"], "ok");
    let link = check(&r, "rocksdb linkage");
    assert_eq!(link["status"], "ok");
    assert!(
        link["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("static")),
        "{link}"
    );
    assert_eq!(check(&r, "traced functions")["status"], "ok", "{r}");
    // Debian's static librocksdb.a starts rocksdb_iter_next with `mov (%rdi),%rdi`.
    let cost = check(&r, "probe cost");
    assert_eq!(cost["status"], "warn", "{cost}");
    assert!(
        cost["detail"]
            .as_str()
            .is_some_and(|d| d.contains("rocksdb_iter_next"))
    );
    if is_root() {
        assert_eq!(r["ready"], true, "{r}");
        assert_eq!(code, Some(0));
    }
}

/// Spawns `sleep 30` under an allow-everything seccomp filter (as systemd's
/// `SystemCallFilter=` would install one).
fn spawn_seccomp_filtered_sleep() -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    // SAFETY: only async-signal-safe prctl calls between fork and exec, on data owned by the
    // closure.
    unsafe {
        cmd.pre_exec(|| {
            let mut allow = [libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            }];
            let prog = libc::sock_fprog {
                len: 1,
                filter: allow.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn a seccomp-filtered sleep")
}

#[test]
fn seccomp_filtered_target() {
    let mut child = spawn_seccomp_filtered_sleep();
    let pid = child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let (r, _) = json(&["check", "--json", "--pid", &pid.to_string()]);
    child.kill().expect("kill");
    let _ = child.wait();
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let c = check(&r, "target seccomp");
    let release = r["kernel_release"].as_str().expect("release");
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let version: (u32, u32) = (
        it.next().and_then(|v| v.parse().ok()).expect("major"),
        it.next().and_then(|v| v.parse().ok()).expect("minor"),
    );
    if version >= (6, 11) {
        assert_eq!(c["status"], "warn", "{c}");
        assert!(
            c["hint"].as_str().is_some_and(|h| h.contains("uretprobe")),
            "{c}"
        );
    } else {
        assert_eq!(c["status"], "ok", "{c}");
    }
}
