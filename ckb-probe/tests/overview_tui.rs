//! `ckb-probe overview` as a person uses it: the real binary in a real terminal (tmux, the
//! Debian package `scripts/bootstrap.sh` installs), keys sent with `send-keys`, the screen
//! read with `capture-pane`. Checks live numbers and every tab, then that quitting (q,
//! SIGTERM, or q after the target exited) gives the terminal back in its normal state and
//! leaves none of the run's BPF programs loaded.
//! Needs root and tmux; run with `--test-threads=1` (probes are global state).

mod support;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use support::*;

/// A tmux server of its own (its own socket, no user configuration) with one session.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(width: u16, height: u16) -> Tmux {
        let socket = format!("ckb-probe-test-{}", std::process::id());
        let t = Tmux { socket };
        let st = t
            .cmd()
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .args(["env", "PS1=$ ", "bash", "--norc", "--noprofile"])
            .status()
            .expect("tmux: install it with scripts/bootstrap.sh (Debian package tmux)");
        assert!(st.success(), "tmux new-session failed");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("tmux");
        assert!(out.status.success(), "tmux {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types a shell command line and runs it.
    fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "t", "-l", line]);
        self.run(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Presses keys (tmux key names: `Tab`, `BTab`, `Down`, `Escape`, `q`, ...).
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "t", k]);
        }
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    fn format(&self, f: &str) -> String {
        self.run(&["display-message", "-p", "-t", "t", f])
            .trim()
            .to_string()
    }

    /// The screen once it shows every one of `texts` (at most `timeout`).
    #[track_caller]
    fn wait_for(&self, texts: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if texts.iter().all(|t| s.contains(t)) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("{texts:?} not on the screen after {timeout:?}:\n{s}");
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The terminal is back to normal: main screen, cursor shown, canonical mode with echo
    /// and signals, and the shell prompt answering.
    #[track_caller]
    fn assert_restored(&self) {
        assert_eq!(
            self.format("#{alternate_on}"),
            "0",
            "still on the alternate screen"
        );
        assert_eq!(self.format("#{cursor_flag}"), "1", "cursor hidden");
        // The marker is computed by the shell, so the echoed command line never matches it.
        self.type_line(
            "echo \"$(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo|isig|icrnl|opost)' | tr '\\n' ' ') STTY-$((6*7))\"",
        );
        let s = self.wait_for(&["STTY-42"], Duration::from_secs(10));
        let line = s
            .lines()
            .find(|l| l.contains("STTY-42"))
            .expect("stty output");
        for flag in ["isig", "icanon", "echo", "icrnl", "opost"] {
            assert!(
                line.split_whitespace().any(|w| w == flag),
                "terminal mode not restored ({flag}): {line}"
            );
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ends the shell and anything still running in it (SIGHUP: probes detach).
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The ckb-probe process running `overview --pid <target>`.
fn overview_pid(target: u32) -> u32 {
    let want = ["overview".to_string(), "--pid".into(), target.to_string()];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.first().is_some_and(|a| a.ends_with("ckb-probe"))
                && args.windows(3).any(|w| w == want)
            {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "no ckb-probe overview process");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Ids of the BPF programs a process holds (its program and link descriptors).
fn held_programs(pid: u32) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir.flatten() {
        if let Ok(info) = std::fs::read_to_string(e.path()) {
            ids.extend(info.lines().filter_map(|l| {
                l.strip_prefix("prog_id:")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            }));
        }
    }
    ids
}

/// Ids of every BPF program loaded in the kernel.
fn loaded_programs() -> BTreeSet<u64> {
    let out = Command::new("bpftool")
        .args(["prog", "list", "--json"])
        .output()
        .expect("bpftool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    v.as_array()
        .expect("bpftool list")
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

#[track_caller]
fn assert_unloaded(ours: &BTreeSet<u64>) {
    // Closing the descriptors frees the programs at once; allow the kernel a moment to
    // reap them.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u64> = loaded_programs().intersection(ours).copied().collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs of the run still loaded: {left:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The number right after `label` on the first line that has it (`GET   7,365` → 7365).
fn number_after(screen: &str, label: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.contains(label))?;
    let rest = &line[line.find(label)? + label.len()..];
    let tok = rest.split_whitespace().next()?;
    tok.replace(',', "").parse().ok()
}

fn uptime(screen: &str) -> Option<u64> {
    let line = screen.lines().next()?;
    let t = &line[line.find("up ")? + 3..];
    let p: Vec<u64> = t
        .get(..8)?
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    Some(p[0] * 3600 + p[1] * 60 + p[2])
}

fn probe_cmd(target: u32, extra: &str) -> String {
    format!(
        "{} overview --pid {target} --warmup 5 {extra}; echo EXIT=$?",
        ckb_probe().display()
    )
}

#[test]
fn overview_on_the_testbed_every_tab_live_then_q_restores_everything() {
    let tb = Testbed::spawn(
        "static",
        &["--threads", "2", "--duration", "40", "--rate", "2000"],
    );
    let tmux = Tmux::start(100, 30);
    tmux.type_line(&probe_cmd(tb.pid, "--threshold 100"));
    let probe = overview_pid(tb.pid);
    tmux.wait_for(&["P2P network", "LIVE"], Duration::from_secs(60));
    tb.start();
    let ours = held_programs(probe);
    assert!(ours.len() > 20, "programs held: {ours:?}");

    // Overview: live numbers, moving.
    tmux.wait_for(
        &["│GET ", "Syscalls: top 5 by time"],
        Duration::from_secs(20),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = tmux.screen();
        if number_after(&s, "│GET ").is_some_and(|q| q > 100) {
            break s;
        }
        assert!(Instant::now() < deadline, "no GET load on screen:\n{s}");
        thread::sleep(Duration::from_millis(300));
    };
    let up = uptime(&s).expect("uptime in the header");
    thread::sleep(Duration::from_secs(2));
    let later = tmux.screen();
    assert!(
        uptime(&later).unwrap() > up,
        "the screen is not live:\n{later}"
    );
    assert!(later.contains("ckb-probe-testb (not CKB)"), "{later}");
    assert!(later.contains("attached to PID"), "event log: {later}");
    // The testbed appends its WAL with write(2): always in the top 5 by time.
    assert!(
        later.contains("│write "),
        "write not in the syscall top 5:\n{later}"
    );

    // RocksDB tab: operations, histogram, history, slow log, column families.
    tmux.keys(&["2"]);
    let s = tmux.wait_for(
        &[
            "Operations",
            "GET latency",
            "GET history",
            "Slow ops ≥100μs",
            "GET by column family",
            "since start",
        ],
        Duration::from_secs(5),
    );
    assert!(number_after(&s, "›GET").is_some_and(|q| q > 100), "{s}");
    assert!(s.contains("BLOCK_HEADER") || s.contains("INDEX"), "{s}");
    tmux.keys(&["Down"]);
    tmux.wait_for(
        &["›PUT", "PUT latency", "PUT by column family"],
        Duration::from_secs(5),
    );

    // Network tab: the testbed has no TCP peer; the tables are there and say so.
    tmux.keys(&["3"]);
    tmux.wait_for(
        &["Peers 0", "no TCP peers seen yet", "Connection events"],
        Duration::from_secs(5),
    );

    // Syscall tab: ranking, roles, histogram of the selected call.
    tmux.keys(&["4"]);
    let s = tmux.wait_for(
        &["System calls by time", "by thread role", "since start"],
        Duration::from_secs(5),
    );
    assert!(s.contains("│›"), "no selected row:\n{s}");

    // Tab wraps round to Overview; help; pause.
    tmux.keys(&["Tab"]);
    tmux.wait_for(&["P2P network", "Events"], Duration::from_secs(5));
    tmux.keys(&["BTab"]);
    tmux.wait_for(&["System calls by time"], Duration::from_secs(5));
    tmux.keys(&["?"]);
    tmux.wait_for(&["Keys", "pause the screen"], Duration::from_secs(5));
    tmux.keys(&["Escape"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.screen().contains("pause the screen") {
        assert!(Instant::now() < deadline, "Esc did not close the help");
        thread::sleep(Duration::from_millis(100));
    }
    tmux.keys(&["1", "p"]);
    let s = tmux.wait_for(&["PAUSED"], Duration::from_secs(5));
    thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        uptime(&tmux.screen()),
        uptime(&s),
        "a paused screen does not change"
    );
    tmux.keys(&["p"]);
    tmux.wait_for(&["LIVE"], Duration::from_secs(5));

    // Resizing redraws at the new size.
    tmux.run(&["resize-window", "-t", "t", "-x", "80", "-y", "24"]);
    let s = tmux.wait_for(&["P2P network"], Duration::from_secs(5));
    assert!(s.lines().all(|l| l.chars().count() <= 80), "{s}");

    // q: the terminal comes back, the probes are gone.
    tmux.keys(&["q"]);
    let s = tmux.wait_for(&["EXIT=0"], Duration::from_secs(15));
    assert!(s.contains("probes detached"), "{s}");
    assert!(!s.contains("panicked"), "{s}");
    tmux.assert_restored();
    assert_unloaded(&ours);
    tb.finish();
}

/// A RocksDB-less target (the TCP netbed): the RocksDB panes say why, the network layer shows
/// its peers and events live; when the target exits the screen says so with the probes
/// already detached, and waits for q.
#[test]
fn overview_target_exit_detaches_at_once_and_waits_for_q() {
    let nb = Netbed::spawn(&["--conns", "3", "--linger", "6"]);
    let tmux = Tmux::start(100, 30);
    tmux.type_line(&probe_cmd(nb.pid, ""));
    let probe = overview_pid(nb.pid);
    tmux.wait_for(
        &["rocksdb layer unavailable", "LIVE"],
        Duration::from_secs(60),
    );
    let ours = held_programs(probe);
    assert!(!ours.is_empty());
    nb.start();
    let s = tmux.wait_for(&["NET   connect", "NET   close"], Duration::from_secs(20));
    assert!(s.contains("contains no RocksDB C API"), "{s}");
    tmux.keys(&["3"]);
    let s = tmux.wait_for(
        &["127.0.0.1:", "[::1]:", "Connection events"],
        Duration::from_secs(10),
    );
    assert!(number_after(&s, "Peers ").is_some_and(|n| n >= 4), "{s}");

    // The netbed lingers 6 s, then exits.
    tmux.wait_for(&["ENDED", "Target exited"], Duration::from_secs(30));
    // Detaching runs beside the screen (the kernel may take seconds); then it says so.
    tmux.wait_for(&["probes detached; q quits"], Duration::from_secs(60));
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "the screen waits for q"
    );
    assert!(held_programs(probe).is_empty(), "descriptors still held");
    assert_unloaded(&ours);
    tmux.keys(&["q"]);
    let s = tmux.wait_for(&["EXIT=0"], Duration::from_secs(10));
    assert!(
        s.contains(&format!(
            "target process {} exited; probes detached",
            nb.pid
        )),
        "{s}"
    );
    tmux.assert_restored();
    nb.finish();
}

#[test]
fn overview_sigterm_restores_the_terminal_and_detaches() {
    let tb = Testbed::spawn(
        "static",
        &["--threads", "2", "--duration", "20", "--rate", "1000"],
    );
    let tmux = Tmux::start(80, 24);
    tmux.type_line(&probe_cmd(tb.pid, ""));
    let probe = overview_pid(tb.pid);
    tmux.wait_for(&["P2P network", "LIVE"], Duration::from_secs(60));
    tb.start();
    tmux.wait_for(&["│GET "], Duration::from_secs(20));
    let ours = held_programs(probe);
    assert!(!ours.is_empty());
    // SAFETY: plain kill(2) of the process this test started (through the shell).
    unsafe { libc::kill(probe as i32, libc::SIGTERM) };
    let s = tmux.wait_for(&["EXIT=0"], Duration::from_secs(15));
    assert!(s.contains("probes detached"), "{s}");
    tmux.assert_restored();
    assert_unloaded(&ours);
    tb.finish();
}

/// `overview --symbols-from` on a stripped node, as `rocksdb` takes it: another build is refused
/// by build-id (exit 2), though the overview goes on without a layer that cannot attach; the
/// unstripped build counts the stripped process's calls exactly (the recording's summary).
#[test]
fn overview_with_symbols_from() {
    let dir = tempfile::tempdir().unwrap();
    let (full, node) = stripped_copy(dir.path());
    let args = ["--threads", "1", "--duration", "2", "--rate", "1000"];
    let tb = Testbed::spawn_exe(&node, &args);
    // Wide enough that the refusal's line is not wrapped in the middle of "build-id".
    let tmux = Tmux::start(200, 30);
    let other = testbed("dylib");
    tmux.type_line(&probe_cmd(
        tb.pid,
        &format!("--symbols-from {}", other.display()),
    ));
    let s = tmux.wait_for(&["EXIT=2"], Duration::from_secs(60));
    assert!(s.contains("build-id"), "{s}");

    let rec = dir.path().join("run.ndjson");
    tmux.type_line(&probe_cmd(
        tb.pid,
        &format!(
            "--symbols-from {} --record {}",
            full.display(),
            rec.display()
        ),
    ));
    tmux.wait_for(&["LIVE"], Duration::from_secs(60));
    tb.start();
    let truth = tb.finish();
    tmux.wait_for(&["ENDED"], Duration::from_secs(30));
    tmux.keys(&["q"]);
    tmux.wait_for(&["EXIT=0"], Duration::from_secs(60));
    let lines: Vec<String> = std::fs::read_to_string(&rec)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_counts_exact(summary(&parse_ndjson(&lines)), &truth, "overview");
}

#[test]
fn overview_refuses_without_a_terminal_or_with_json() {
    for (args, want) in [
        (vec!["overview", "--pid", "1"], "needs a terminal"),
        (vec!["overview", "--pid", "1", "--json"], "has no --json"),
        (
            vec!["overview", "--pid", "1", "--interval", "0"],
            "--interval",
        ),
    ] {
        let out = Command::new(ckb_probe())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run ckb-probe");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The TCP workload with known connections (ckb-probe-netbed), waiting for its start file.
struct Netbed {
    child: Child,
    pid: u32,
    dir: tempfile::TempDir,
}

impl Netbed {
    fn spawn(args: &[&str]) -> Netbed {
        let bin = testbed_bin("ckb-probe-netbed");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(bin)
            .args(args)
            .arg("--start-file")
            .arg(dir.path().join("start"))
            .arg("--output")
            .arg(dir.path().join("truth.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn netbed");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().expect("READY").expect("netbed stdout");
        let pid = ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("pid="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {ready}"));
        thread::spawn(move || for _ in lines {});
        Netbed { child, pid, dir }
    }

    fn start(&self) {
        std::fs::write(self.dir.path().join("start"), b"go").expect("start file");
    }

    fn finish(mut self) {
        let st = self.child.wait().expect("wait netbed");
        assert!(st.success(), "netbed failed: {st}");
    }
}

impl Drop for Netbed {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `overview --follow`: the node exits and a new one starts at the same path. The screen
/// stays, says the target exited and that it waits (header, tab bar, event log), attaches to
/// the successor by itself (header `restart 1, was OLD`, event log), and counts it from zero;
/// the recording has both lifecycle events and, per process, exactly that process's calls.
#[test]
fn overview_follow_keeps_the_screen_across_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let exe = testbed_copy(work.path());
    let rec = work.path().join("run.ndjson");
    let args = ["--threads", "1", "--duration", "2", "--rate", "1000"];
    let a = Testbed::spawn_exe(&exe, &args);
    let pid_a = a.pid;
    let tmux = Tmux::start(160, 40);
    tmux.type_line(&probe_cmd(
        a.pid,
        &format!("--follow --record {}", rec.display()),
    ));
    let probe = overview_pid(a.pid);
    tmux.wait_for(&["P2P network", "LIVE"], Duration::from_secs(60));
    let mut ours = held_programs(probe);
    a.start();
    let truth_a = a.finish();
    let exited = format!("target_exited: PID {}", pid_a);
    let s = tmux.wait_for(
        &[
            "WAITING",
            "waiting for the node to come back (--follow)",
            &exited,
        ],
        Duration::from_secs(30),
    );
    assert!(!s.contains("ENDED"), "{s}");
    assert_eq!(tmux.format("#{alternate_on}"), "1", "the screen stays");

    let b = Testbed::successor_at(&exe, &testbed("static"), &args);
    let pid_b = b.pid;
    let was = format!("(restart 1, was {})", pid_a);
    tmux.wait_for(
        &[&was, &format!("target_attached: PID {}", pid_b), "LIVE"],
        Duration::from_secs(60),
    );
    ours.extend(held_programs(probe));
    b.start();
    let truth_b = b.finish();
    tmux.wait_for(
        &[&format!("target_exited: PID {}", pid_b), "WAITING"],
        Duration::from_secs(30),
    );
    tmux.keys(&["q"]);
    let s = tmux.wait_for(&["EXIT=0"], Duration::from_secs(60));
    assert!(!s.contains("panicked"), "{s}");
    tmux.assert_restored();
    assert_unloaded(&ours);

    // The recording: reports of each process, the gap marked between them.
    let lines: Vec<String> = std::fs::read_to_string(&rec)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let objs = parse_ndjson(&lines);
    let kinds: Vec<&str> = objs
        .iter()
        .filter_map(|o| o["type"].as_str())
        .filter(|t| t.starts_with("target_"))
        .collect();
    assert_eq!(
        kinds,
        ["target_exited", "target_attached", "target_exited"],
        "lifecycle events"
    );
    let attached = objs
        .iter()
        .find(|o| o["type"] == "target_attached")
        .unwrap();
    assert_eq!(u(&attached["pid"]), u64::from(pid_b));
    assert_eq!(u(&attached["previous_pid"]), u64::from(pid_a));
    assert_eq!(u(&attached["restarts"]), 1);
    let s = summary(&objs);
    assert_eq!(u(&s["pid"]), u64::from(pid_b));
    let traced = s["attached"].as_array().unwrap();
    assert_exact_per_pid(&objs, pid_a, &truth_a, traced, "first process");
    assert_exact_per_pid(&objs, pid_b, &truth_b, traced, "its successor");
}
