//! The CKB node's own JSON-RPC, used only to label output (version, peers): finding its
//! address in the node's `ckb.toml`, and a minimal HTTP/1.1 client with short timeouts so a
//! slow or absent RPC never delays tracing.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use serde_json::Value;

use crate::target::Process;

const TIMEOUT: Duration = Duration::from_millis(500);

/// The node's data directory: `-C DIR` / `--config-dir DIR` in its argv (relative to its cwd),
/// else its working directory; read through /proc/PID/root so other mount namespaces work.
fn config_dir(p: &Process) -> PathBuf {
    let root = PathBuf::from(format!("/proc/{}/root", p.pid));
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", p.pid)).unwrap_or_else(|_| "/".into());
    let mut args = p.cmdline.iter();
    let mut dir = None;
    while let Some(a) = args.next() {
        if a == "-C" || a == "--config-dir" {
            dir = args.next().cloned();
        } else if let Some(d) = a.strip_prefix("--config-dir=") {
            dir = Some(d.to_string());
        }
    }
    let dir = match dir {
        Some(d) if d.starts_with('/') => PathBuf::from(d),
        Some(d) => cwd.join(d),
        None => cwd,
    };
    root.join(dir.strip_prefix("/").unwrap_or(&dir))
}

/// `[rpc] listen_address` from the node's ckb.toml.
pub fn rpc_addr(p: &Process) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(config_dir(p).join("ckb.toml")).ok()?;
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        } else if section == "rpc"
            && let Some(v) = line.strip_prefix("listen_address")
        {
            let v = v.trim_start().strip_prefix('=')?.trim().trim_matches('"');
            let v = v.replace("0.0.0.0", "127.0.0.1");
            return v.to_socket_addrs().ok()?.next();
        }
    }
    None
}

/// One JSON-RPC call; `None` on any failure.
pub fn call(addr: SocketAddr, method: &str, params: Value) -> Option<Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    s.set_read_timeout(Some(TIMEOUT)).ok()?;
    s.set_write_timeout(Some(TIMEOUT)).ok()?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut resp = Vec::new();
    s.take(16 << 20).read_to_end(&mut resp).ok()?;
    let split = memchr::memmem::find(&resp, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&resp[..split]).ok()?;
    let body = &resp[split..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    let v: Value = serde_json::from_slice(&body).ok()?;
    v.get("result").cloned()
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = memchr::memmem::find(b, b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).ok()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(eol + 2..eol + 2 + size)?);
        b = b.get(eol + 4 + size..)?;
    }
}

/// "CKB v0.210.0" from `local_node_info`, else from the binary, else "<comm> (not CKB)".
pub fn describe(p: &Process) -> String {
    let from_rpc = rpc_addr(p)
        .and_then(|a| call(a, "local_node_info", serde_json::json!([])))
        .and_then(|v| v.get("version")?.as_str().map(str::to_string));
    // The binary is read only when the RPC does not answer (it takes ~50 ms on CKB).
    let version = from_rpc.or_else(|| {
        crate::symbols::analyze(&p.exe_open)
            .ok()
            .and_then(|r| r.ckb_version)
    });
    match version.as_deref() {
        Some(v) => {
            let v = v.split_whitespace().next().unwrap_or(v);
            format!("CKB v{}", v.trim_start_matches('v'))
        }
        // Not a CKB node (e.g. the testbed): name the program instead.
        None => format!("{} (not CKB)", p.comm),
    }
}

/// A connected peer as the node's `get_peers` RPC reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcPeer {
    pub node_id: String,
    pub version: String,
    pub is_outbound: Option<bool>,
    /// TCP endpoints from its multiaddrs (`/ip4/A/tcp/P/...`, `/ip6/A/tcp/P/...`).
    pub addresses: Vec<(std::net::IpAddr, u16)>,
}

/// `(address, port)` of a `/ip4/..` or `/ip6/..` multiaddr with a `/tcp/..` part.
pub fn multiaddr_tcp(m: &str) -> Option<(std::net::IpAddr, u16)> {
    let parts: Vec<&str> = m.split('/').collect();
    let ip = parts.windows(2).find_map(|w| match w[0] {
        "ip4" | "ip6" => w[1].parse::<std::net::IpAddr>().ok(),
        _ => None,
    })?;
    let port = parts
        .windows(2)
        .find_map(|w| (w[0] == "tcp").then(|| w[1].parse::<u16>().ok())?)?;
    Some((ip, port))
}

/// The node's `get_peers`; `None` when the RPC does not answer (or lacks the Net module).
pub fn get_peers(addr: SocketAddr) -> Option<Vec<RpcPeer>> {
    let v = call(addr, "get_peers", serde_json::json!([]))?;
    let list = v.as_array()?;
    Some(
        list.iter()
            .map(|p| RpcPeer {
                node_id: p["node_id"].as_str().unwrap_or("").to_string(),
                version: p["version"].as_str().unwrap_or("").to_string(),
                is_outbound: p["is_outbound"].as_bool(),
                addresses: p["addresses"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x["address"].as_str().and_then(multiaddr_tcp))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
    )
}

/// TCP ports of `[network] listen_addresses` in the node's ckb.toml (its P2P ports).
pub fn p2p_listen_ports(p: &Process) -> Vec<u16> {
    let Ok(text) = std::fs::read_to_string(config_dir(p).join("ckb.toml")) else {
        return Vec::new();
    };
    let mut section = String::new();
    let mut value = String::new();
    let mut in_value = false;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if in_value {
            value.push_str(line);
            in_value = !line.contains(']');
            continue;
        }
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
        } else if section == "network"
            && let Some(v) = line.strip_prefix("listen_addresses")
            && let Some(v) = v.trim_start().strip_prefix('=')
        {
            value = v.trim().to_string();
            // The array may span several lines.
            in_value = !value.contains(']');
        }
    }
    value
        .split('"')
        .skip(1)
        .step_by(2)
        .filter_map(|m| multiaddr_tcp(m).map(|(_, port)| port))
        .collect()
}
