//! A running `ckb-probe export`, found serving by its stderr line; SIGINT and a wait on drop.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use super::{ckb_probe, http_get};

pub struct Exporter {
    pub child: Child,
    /// Where it serves (`IP:PORT`, from its "serving http://" line).
    pub addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Exporter {
    /// `ckb-probe export ARGS`.
    pub fn start(args: &[&str]) -> Exporter {
        let mut cmd = Command::new(ckb_probe());
        cmd.arg("export").args(args);
        Exporter::spawn(cmd)
    }

    /// Starts `cmd` (a whole `ckb-probe export` command line, e.g. from
    /// [`super::as_nobody`]) and waits until it serves.
    pub fn spawn(mut cmd: Command) -> Exporter {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ckb-probe export");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let mut pipe = BufReader::new(child.stderr.take().expect("stderr"));
        let all = Arc::clone(&stderr);
        // The drain also keeps the pipe from filling while the run goes on.
        thread::spawn(move || {
            let mut line = String::new();
            while pipe.read_line(&mut line).is_ok_and(|n| n > 0) {
                // Kept before the address is sent: the caller may read the line at once.
                all.lock().unwrap().push_str(&line);
                if let Some(rest) = line.split("serving http://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                }
                line.clear();
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                let _ = child.wait();
                panic!("export did not start serving: {}", stderr.lock().unwrap())
            });
        Exporter {
            child,
            addr,
            stderr,
        }
    }

    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        http_get(&self.addr, path, accept)
    }

    /// Waits until `/healthz` answers `status`.
    pub fn wait_health(&self, status: u16, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (s, _, body) = self.get("/healthz", None);
            if s == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz stayed {s} ({body}); stderr: {}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGINT; returns the exit code.
    pub fn stop(mut self) -> i32 {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "export did not stop on SIGINT");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A test that fails with the exporter running must not leave it behind (its probes, and the
/// lock on BPF tests its parent held, would stay for ever).
impl Drop for Exporter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
