//! The syscall test target (`ckb-probe-sysbed`): threads named like a CKB node's that make
//! known numbers of known system calls, and report them as ground truth.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;

const NAME: &str = "ckb-probe-sysbed";

/// The sysbed binary of this test's profile, (re)built when missing or older than its source.
pub fn sysbed() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let exe = std::env::current_exe().expect("current exe");
    // Tests run from target/<profile>/deps/<test>.
    let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
    let path = profile_dir.join(NAME);
    let src = root.join("ckb-probe-testbed/src/bin/ckb-probe-sysbed.rs");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (mtime(&path), mtime(&src)) {
        (Some(bin), Some(src)) => bin < src,
        _ => true,
    };
    if stale {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "ckb-probe-testbed", "--bin", NAME])
            .current_dir(&root);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo build sysbed");
        assert!(st.success(), "building {NAME} failed");
    }
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// A running sysbed waiting on its start file.
pub struct Sysbed {
    pub child: Child,
    pub pid: u32,
    pub dir: tempfile::TempDir,
}

impl Sysbed {
    /// Spawns the sysbed with `args`, waits for its `READY` line.
    pub fn spawn(args: &[&str]) -> Sysbed {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(sysbed())
            .args(args)
            .arg("--start-file")
            .arg(dir.path().join("start"))
            .arg("--output")
            .arg(dir.path().join("truth.json"))
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sysbed");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let pid = loop {
            let line = lines
                .next()
                .expect("sysbed exited before READY")
                .expect("read sysbed stdout");
            if let Some(p) = line.strip_prefix("READY pid=") {
                break p.trim().parse::<u32>().expect("pid");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Sysbed { child, pid, dir }
    }

    pub fn start(&self) {
        std::fs::write(self.dir.path().join("start"), b"go").expect("start file");
    }

    /// Waits for the sysbed to exit; returns its ground truth.
    pub fn finish(mut self) -> Value {
        let st = self.child.wait().expect("wait sysbed");
        assert!(st.success(), "sysbed failed: {st}");
        let text = std::fs::read_to_string(self.dir.path().join("truth.json")).expect("truth");
        serde_json::from_str(&text).expect("truth json")
    }

    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Sysbed {
    /// A failed test must not leave a sysbed running (a `--bench` one runs for a while).
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
