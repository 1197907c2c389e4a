//! A real CKB dev-chain node for tests, started and stopped through scripts/ckb-node.sh.

use std::{path::PathBuf, process::Command};

use super::workspace_root;

/// A loopback TCP port free right now: the kernel picks it for a socket bound to port 0. Tests
/// use these instead of fixed ports so they pass where another node already runs.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// A running node (and its miner); stopped on drop, even when the test fails.
pub struct CkbNode {
    pub dir: PathBuf,
    pub pid: u32,
    pub rpc: String,
    pub rpc_port: u16,
    pub p2p_port: u16,
    _tmp: tempfile::TempDir,
}

fn script() -> PathBuf {
    workspace_root().join("scripts/ckb-node.sh")
}

/// Parses the script's last stdout line, `KEY=VALUE KEY=VALUE ...`.
fn field(out: &str, key: &str) -> String {
    out.lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in: {out}"))
        .to_string()
}

impl CkbNode {
    /// Starts a node on free loopback ports and waits for blocks to be mined.
    pub fn start() -> CkbNode {
        let (rpc_port, p2p_port) = (free_port(), free_port());
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .env("CKB_RPC_PORT", rpc_port.to_string())
            .env("CKB_P2P_PORT", p2p_port.to_string())
            .output()
            .expect("run ckb-node.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "ckb-node.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        CkbNode {
            pid: field(&stdout, "CKB_PID").parse().expect("pid"),
            rpc: field(&stdout, "CKB_RPC"),
            rpc_port,
            p2p_port,
            dir,
            _tmp: tmp,
        }
    }

    /// Stops the node (miner first) and starts it again in the same directory on the same
    /// ports, as an operator's restart does; the new node's PID replaces the old one.
    pub fn restart(&mut self) {
        let st = Command::new(script())
            .arg("stop")
            .arg(&self.dir)
            .status()
            .expect("ckb-node.sh stop");
        assert!(st.success(), "ckb-node.sh stop failed");
        let out = Command::new(script())
            .arg("start")
            .arg(&self.dir)
            .env("CKB_RPC_PORT", self.rpc_port.to_string())
            .env("CKB_P2P_PORT", self.p2p_port.to_string())
            .output()
            .expect("run ckb-node.sh");
        assert!(
            out.status.success(),
            "ckb-node.sh start (restart) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.pid = field(&String::from_utf8_lossy(&out.stdout), "CKB_PID")
            .parse()
            .expect("pid");
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the node we started.
        unsafe { libc::kill(self.pid as i32, sig) };
    }
}

impl Drop for CkbNode {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}
