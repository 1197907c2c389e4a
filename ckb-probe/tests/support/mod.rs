//! Shared helpers for ckb-probe's integration tests: real BPF programs attached to real
//! processes (the testbed, or a real CKB node), compared with ground truth. Tests that load
//! BPF need root; they run one at a time (`--test-threads=1`) because probes are global state.
#![allow(dead_code)]

pub mod bench;
pub mod ckb_node;
pub mod exporter;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn ckb_probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ckb-probe"))
}

/// The testbed binary (`static` like CKB, or `dylib`), built with this test's profile if absent.
pub fn testbed(mode: &str) -> PathBuf {
    match mode {
        "static" => testbed_bin("ckb-probe-testbed"),
        "dylib" => testbed_bin("ckb-probe-testbed-dylib"),
        m => panic!("unknown testbed mode {m}"),
    }
}

/// A binary of the `ckb-probe-testbed` package (testbed, netbed, sysbed), built with this
/// test's profile if absent.
pub fn testbed_bin(name: &str) -> PathBuf {
    // tests run from target/<profile>/deps/<test>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
    let path = profile_dir.join(name);
    if !path.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "ckb-probe-testbed", "--bin", name])
            .current_dir(workspace_root());
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo build testbed");
        assert!(st.success(), "building {name} failed");
    }
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A copy of the static testbed at `dir/node`: a node binary at a path of its own, which a
/// test may restart, replace or patch.
pub fn testbed_copy(dir: &Path) -> PathBuf {
    let exe = dir.join("node");
    std::fs::copy(testbed("static"), &exe).expect("copy the testbed");
    exe
}

/// `(full, node)`: a copy of the static testbed at `dir/full`, and the same stripped at
/// `dir/node` (a node binary without a symbol table, same build-id).
pub fn stripped_copy(dir: &Path) -> (PathBuf, PathBuf) {
    let full = dir.join("full");
    let node = dir.join("node");
    std::fs::copy(testbed("static"), &full).unwrap();
    let st = Command::new("strip")
        .arg("-o")
        .arg(&node)
        .arg(&full)
        .status()
        .expect("strip (binutils)");
    assert!(st.success());
    (full, node)
}

/// A running testbed waiting on its start file.
pub struct Testbed {
    pub child: Child,
    pub pid: u32,
    pub dir: tempfile::TempDir,
}

impl Testbed {
    /// Spawns the testbed with `args`, waits for its `READY` line.
    pub fn spawn(mode: &str, args: &[&str]) -> Testbed {
        Testbed::spawn_exe(&testbed(mode), args)
    }

    /// The same from a testbed executable at `exe` (e.g. a copy standing in for a node binary).
    pub fn spawn_exe(exe: &Path, args: &[&str]) -> Testbed {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(exe)
            .args(args)
            .arg("--start-file")
            .arg(dir.path().join("start"))
            .arg("--output")
            .arg(dir.path().join("truth.json"))
            .arg("--db")
            .arg(dir.path().join("db"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn testbed");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let pid = loop {
            let line = lines
                .next()
                .expect("testbed exited before READY")
                .expect("read testbed stdout");
            if let Some(p) = line.strip_prefix("READY pid=") {
                break p.trim().parse::<u32>().expect("pid");
            }
        };
        // Keep draining stdout so the testbed never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Testbed { child, pid, dir }
    }

    /// A new node process at `exe` (a restart, or an upgrade when `binary` is another build),
    /// as a deployment does it: started from a file beside `exe`, moved over `exe` once READY.
    /// A follower finds it only then, so its preload (before READY, outside the ground truth)
    /// is not counted.
    pub fn successor_at(exe: &Path, binary: &Path, args: &[&str]) -> Testbed {
        let next = exe.with_extension("next");
        std::fs::copy(binary, &next).expect("copy the new binary");
        let tb = Testbed::spawn_exe(&next, args);
        // The running process's /proc/PID/exe follows the rename.
        std::fs::rename(&next, exe).expect("move the new binary into place");
        tb
    }

    pub fn start(&self) {
        std::fs::write(self.dir.path().join("start"), b"go").expect("start file");
    }

    /// Waits for the measured phase to end; returns the ground truth.
    pub fn finish(mut self) -> Value {
        let st = self.child.wait().expect("wait testbed");
        assert!(st.success(), "testbed failed: {st}");
        let text = std::fs::read_to_string(self.dir.path().join("truth.json")).expect("truth");
        serde_json::from_str(&text).expect("truth json")
    }
}

/// A test that fails before the testbed's run ends must not leave it waiting on its start file
/// (it would hold whatever the test process held, for ever).
impl Drop for Testbed {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `ckb-probe` with its stdout collected line by line.
pub struct Probe {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Probe {
    /// Starts `ckb-probe ARGS` and waits until it has attached (its "attached" stderr line).
    pub fn start(args: &[&str]) -> Probe {
        Probe::start_env(args, &[])
    }

    /// [`Probe::start`] with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Probe {
        let mut cmd = Command::new(ckb_probe());
        cmd.args(args).envs(env.iter().copied());
        Probe::spawn(cmd)
    }

    /// Starts `cmd` (a ckb-probe command line, e.g. from [`as_nobody`]) as [`Probe::start`]
    /// does.
    pub fn spawn(mut cmd: Command) -> Probe {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ckb-probe");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr");
        let (atx, arx) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            let mut buf = [0u8; 4096];
            let mut signalled = false;
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        all.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if !signalled
                            && (all.contains("ckb-probe: tracing ") || all.contains("error"))
                        {
                            signalled = true;
                            let _ = atx.send(());
                        }
                    }
                }
            }
            if !signalled {
                let _ = atx.send(());
            }
            all
        });
        arx.recv_timeout(Duration::from_secs(60))
            .expect("ckb-probe did not attach within 60 s");
        Probe {
            child,
            lines: rx,
            stderr,
        }
    }

    /// Next stdout line, waiting up to `timeout`.
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for exit (at most `timeout`); returns (exit code, stdout lines, stderr).
    pub fn wait(mut self, timeout: Duration) -> (i32, Vec<String>, String) {
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("ckb-probe did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = self.stderr.join().unwrap_or_default();
        let lines: Vec<String> = self.lines.try_iter().collect();
        (code, lines, stderr)
    }
}

/// A plain HTTP/1.0 GET: (status, headers, body).
pub fn http_get(addr: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
    use std::io::Write as _;
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    let (head, body) = out.split_once("\r\n\r\n").expect("response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, head.to_string(), body.to_string())
}

/// A command running ckb-probe as user nobody, from a copy of the binary in `dir` (made on the
/// first call) carrying exactly the file capabilities `caps` (`setcap` syntax); append the
/// ckb-probe arguments.
pub fn as_nobody(dir: &Path, caps: &str) -> Command {
    use std::os::unix::fs::PermissionsExt;
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
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin);
    cmd
}

/// Runs the testbed (`mode`, `testbed_args`) under `ckb-probe rocksdb --pid <testbed> EXTRA`
/// until the testbed's measured phase ends; ckb-probe must then end cleanly, saying the target
/// exited. Returns (ground truth, ckb-probe's stdout lines).
pub fn testbed_run(mode: &str, testbed_args: &[&str], extra: &[&str]) -> (Value, Vec<String>) {
    let tb = Testbed::spawn(mode, testbed_args);
    let pid = tb.pid.to_string();
    let mut args = vec!["rocksdb", "--pid", &pid];
    args.extend_from_slice(extra);
    let probe = Probe::start(&args);
    tb.start();
    let truth = tb.finish();
    let (code, lines, stderr) = probe.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "ckb-probe failed: {stderr}");
    assert!(
        stderr.contains("exited"),
        "no target-exit message: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (truth, lines)
}

/// Parses NDJSON output; every line must be a JSON object.
pub fn parse_ndjson(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("bad JSON {e}: {l}")))
        .inspect(|v| assert!(v.is_object(), "not an object: {v}"))
        .collect()
}

pub fn summary(objs: &[Value]) -> &Value {
    let s = objs.last().expect("no output");
    assert_eq!(s["type"], "summary", "last line is not the summary: {s}");
    s
}

/// The row of `name` in a `symbols --json` report's tier 1.
pub fn tier1<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["tier1"]
        .as_array()
        .expect("tier1 array")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in tier1"))
}

pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Names of loaded BPF programs (from bpftool), to prove nothing is left behind.
pub fn loaded_prog_names() -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["prog", "list", "--json"])
        .output()
        .expect("bpftool");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Ids of the BPF programs process `pid` holds (its fds' `prog_id:` in fdinfo). Other
/// instances of ckb-probe may run on this machine: only these are ours to judge.
pub fn prog_ids_of(pid: u32) -> BTreeSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect()
}

/// Which of `ids` are still loaded, and how many links point at them.
pub fn still_loaded(ids: &BTreeSet<u64>) -> (Vec<u64>, usize) {
    let json = |what: &str| -> serde_json::Value {
        let out = Command::new("bpftool")
            .args([what, "list", "--json"])
            .output()
            .expect("bpftool");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let progs = json("prog");
    let loaded: Vec<u64> = progs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_u64())
        .filter(|id| ids.contains(id))
        .collect();
    let links = json("link");
    let linked = links
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|id| ids.contains(&id)))
        .count();
    (loaded, linked)
}

/// Waits (the kernel frees a program an RCU grace period after its last reference) until none
/// of `ids` is loaded or linked.
pub fn assert_all_gone(ids: &BTreeSet<u64>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (progs, links) = still_loaded(ids);
        if progs.is_empty() && links == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: programs {progs:?} and {links} links still there"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A RocksDB summary counted every call of every traced function exactly: all 23 attached, each
/// one's count the testbed's ground truth.
pub fn assert_counts_exact(summary: &Value, truth: &Value, who: &str) {
    let attached = summary["attached"].as_array().expect("attached");
    assert_eq!(attached.len(), 23, "{who}: {summary}");
    for f in attached {
        let f = f.as_str().unwrap();
        assert_eq!(
            u(&summary["functions"][f]["count"]),
            u(&truth["functions"][f]["calls"]),
            "{who}: {f}"
        );
    }
}

/// A followed run: per traced function, the counts of `pid`'s interval reports add up to
/// `truth` (nothing lost, nothing of another process mixed in).
pub fn assert_exact_per_pid(lines: &[Value], pid: u32, truth: &Value, traced: &[Value], who: &str) {
    for f in traced {
        let f = f.as_str().unwrap();
        let per_interval: Vec<u64> = lines
            .iter()
            .filter(|o| o["type"] == "interval" && u(&o["pid"]) == u64::from(pid))
            .map(|o| u(&o["functions"][f]["count"]))
            .collect();
        assert_eq!(
            per_interval.iter().sum::<u64>(),
            u(&truth["functions"][f]["calls"]),
            "{who} (PID {pid}): {f}, per interval {per_interval:?}"
        );
    }
}

/// (cpu seconds, rss KiB) of a process.
pub fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

/// What [`hiding`] takes away from ckb-probe's view of the machine.
#[derive(Clone, Copy, Debug)]
pub enum Hide {
    /// No tracefs, and none can be mounted: `/sys/kernel` becomes a tmpfs holding only `btf`
    /// (as on a kernel built without tracing, or a container whose `/sys/kernel` has no
    /// `tracing` directory).
    Tracefs,
    /// No `/sys/kernel/btf/vmlinux` (a kernel built without CONFIG_DEBUG_INFO_BTF).
    Btf,
}

/// `ckb-probe ARGS` in a private mount namespace (`unshare --mount`) where `hide` is gone; the
/// host's mounts are untouched.
pub fn hiding(hide: Hide, args: &[&str]) -> Command {
    let script = match hide {
        Hide::Tracefs => {
            "set -e; d=$(mktemp -d); mount --rbind /sys/kernel \"$d\"; \
             mount -t tmpfs -o mode=755 none /sys/kernel; mkdir /sys/kernel/btf; \
             mount --rbind \"$d/btf\" /sys/kernel/btf; umount -l \"$d\"; rmdir \"$d\"; exec \"$@\""
        }
        Hide::Btf => "set -e; mount -t tmpfs -o mode=755 none /sys/kernel/btf; exec \"$@\"",
    };
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(ckb_probe())
    .args(args);
    cmd
}

/// Runs `cmd` to its end, collecting the ids of every BPF program it held on the way (sampled
/// from its fdinfo every few milliseconds). Returns (exit code, stdout, stderr, program ids).
pub fn run_sampling_programs(mut cmd: Command) -> (i32, String, String, BTreeSet<u64>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().expect("stdout")));
    let err = read(Box::new(child.stderr.take().expect("stderr")));
    let mut ids = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let code = loop {
        // unshare execs sh, which execs ckb-probe: the child's PID is ckb-probe's.
        ids.extend(prog_ids_of(child.id()));
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        code,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
        ids,
    )
}

/// The kernel's dynamic probe lists, which outlive a process that created entries through
/// tracefs and did not remove them.
pub fn probe_event_lists() -> String {
    ["uprobe_events", "kprobe_events"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("/sys/kernel/tracing/{f}")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("--\n")
}
