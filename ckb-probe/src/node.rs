//! The CKB node's own JSON-RPC, used only to label output (version, peers): finding its
//! address in the node's `ckb.toml`, and an HTTP client with short timeouts so a slow or absent
//! RPC never delays tracing.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;
use tentacle_multiaddr::Protocol;

use crate::target::Process;

/// Connecting, and each read and write.
const TIMEOUT: Duration = Duration::from_millis(500);
/// The reply's head, then its body: per-read timeouts alone let a node that trickles its reply
/// hold a call for long.
const REPLY_BUDGET: Duration = Duration::from_secs(1);
/// `get_peers` of a node with thousands of peers stays far below this.
const MAX_REPLY: u64 = 16 << 20;

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

/// What ckb-probe reads of `ckb.toml`; every other key is ignored.
#[derive(Debug, Default, Deserialize)]
struct CkbToml {
    #[serde(default)]
    rpc: RpcSection,
    #[serde(default)]
    network: NetworkSection,
}

#[derive(Debug, Default, Deserialize)]
struct RpcSection {
    listen_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct NetworkSection {
    #[serde(default)]
    listen_addresses: Vec<String>,
}

fn ckb_toml(p: &Process) -> Option<CkbToml> {
    let path = config_dir(p).join("ckb.toml");
    let text = std::fs::read_to_string(&path).ok()?;
    toml::from_str(&text)
        .map_err(|e| tracing::debug!("{}: {e}", path.display()))
        .ok()
}

/// `[rpc] listen_address` from the node's ckb.toml.
pub fn rpc_addr(p: &Process) -> Option<SocketAddr> {
    rpc_addr_of(&ckb_toml(p)?)
}

fn rpc_addr_of(conf: &CkbToml) -> Option<SocketAddr> {
    let listen = conf.rpc.listen_address.as_deref()?;
    let mut addr = listen.to_socket_addrs().ok()?.next()?;
    // A node listening on every interface answers on loopback.
    match addr.ip() {
        IpAddr::V4(a) if a.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(a) if a.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    Some(addr)
}

/// One JSON-RPC call; `None` on any failure.
pub fn call(addr: SocketAddr, method: &str, params: Value) -> Option<Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // The node is local: an HTTP(S)_PROXY meant for the outside world must not be used.
        .proxy(None)
        .timeout_connect(Some(TIMEOUT))
        .timeout_per_read(Some(TIMEOUT))
        .timeout_per_write(Some(TIMEOUT))
        // Not a global or per-call timeout: with one, ureq resolves even an IP address on a
        // thread of its own, and ckb-probe stays single-threaded (see `privileges`).
        .timeout_recv_response(Some(REPLY_BUDGET))
        .timeout_recv_body(Some(REPLY_BUDGET))
        .build()
        .into();
    let reply = agent
        .post(format!("http://{addr}/"))
        .header("Content-Type", "application/json")
        .send(&body)
        .and_then(|mut r| r.body_mut().with_config().limit(MAX_REPLY).read_to_vec())
        .map_err(|e| tracing::debug!("RPC {method} on {addr}: {e}"))
        .ok()?;
    let v: Value = serde_json::from_slice(&reply).ok()?;
    v.get("result").cloned()
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
pub fn multiaddr_tcp(m: &str) -> Option<(IpAddr, u16)> {
    let mut parts = m.strip_prefix('/')?.split('/').peekable();
    let (mut ip, mut port) = (None, None);
    // Part by part rather than the whole address, so that a later part that does not parse (a
    // peer id of another form, a protocol newer than the crate) does not hide the endpoint.
    while parts.peek().is_some() {
        match Protocol::from_str_peek(&mut parts) {
            Ok(Protocol::Ip4(a)) => ip = ip.or(Some(IpAddr::V4(a))),
            Ok(Protocol::Ip6(a)) => ip = ip.or(Some(IpAddr::V6(a))),
            Ok(Protocol::Tcp(p)) => port = port.or(Some(p)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Some((ip?, port?))
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
    ckb_toml(p).map(|c| p2p_ports_of(&c)).unwrap_or_default()
}

fn p2p_ports_of(conf: &CkbToml) -> Vec<u16> {
    conf.network
        .listen_addresses
        .iter()
        .filter_map(|m| multiaddr_tcp(m).map(|(_, port)| port))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::{TcpListener, TcpStream},
        sync::mpsc,
        thread,
        time::Instant,
    };

    use super::*;

    /// A ckb.toml as CKB writes it, with what a line scanner gets wrong: comments after values
    /// and headers, commented-out keys, multi-line arrays, inline tables holding a key of the
    /// same name in another section.
    const CKB_TOML: &str = r#"
# [rpc]
# listen_address = "127.0.0.1:1"
data_dir = "data"

[logger]
filter = "info"
color = true

[network] # P2P
listen_addresses = [
    "/ip4/0.0.0.0/tcp/8115", # every IPv4 interface
    # "/ip4/0.0.0.0/tcp/9999",
    "/ip6/::/tcp/8116/ws",
    "/dns4/node.example/tcp/8117",
]
public_addresses = []
bootnodes = ["/ip4/10.0.0.1/tcp/8115/p2p/QmcPUJmhW9spYCLrv9mRcJGBF37UTVjkBPVozs4b89YyV4"]
sync = { header_map = { primary_limit = 300_000, backend_close_threshold = 20_000 } }

[metrics.exporter.prometheus]
target = { type = "prometheus", listen_address = "127.0.0.1:8100" }

[ rpc ] # JSON-RPC
# listen_address = "127.0.0.1:9999"
listen_address = "0.0.0.0:8124" # every interface
tcp_listen_address = "127.0.0.1:18124"
modules = [
  "Net", "Pool",
  "Chain",
]
max_request_body_size = 10_485_760
"#;

    fn parse(text: &str) -> CkbToml {
        toml::from_str(text).expect("valid TOML")
    }

    #[test]
    fn ckb_toml_fields() {
        let conf = parse(CKB_TOML);
        assert_eq!(rpc_addr_of(&conf), Some("127.0.0.1:8124".parse().unwrap()));
        assert_eq!(p2p_ports_of(&conf), [8115, 8116]);

        let v6 = parse("[rpc]\nlisten_address = \"[::]:8114\"\n");
        assert_eq!(rpc_addr_of(&v6), Some("[::1]:8114".parse().unwrap()));
        let none = parse("[network]\nlisten_addresses = []\n");
        assert_eq!(rpc_addr_of(&none), None);
        assert!(p2p_ports_of(&none).is_empty());
        assert!(toml::from_str::<CkbToml>("[rpc\nlisten_address = 1").is_err());
    }

    #[test]
    fn ckb_toml_found_through_the_config_dir_argument() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ckb.toml"), CKB_TOML).expect("write");
        let p = Process {
            pid: std::process::id(),
            comm: "ckb".into(),
            cmdline: ["ckb", "run", "-C", dir.path().to_str().expect("utf-8")]
                .map(String::from)
                .to_vec(),
            exe: PathBuf::new(),
            exe_open: PathBuf::new(),
            mapped: Vec::new(),
        };
        assert_eq!(rpc_addr(&p), Some("127.0.0.1:8124".parse().unwrap()));
        assert_eq!(p2p_listen_ports(&p), [8115, 8116]);
        std::fs::write(dir.path().join("ckb.toml"), "[rpc\n").expect("write");
        assert_eq!(rpc_addr(&p), None);
        assert!(p2p_listen_ports(&p).is_empty());
    }

    #[test]
    fn multiaddrs() {
        let tcp = |m: &str| multiaddr_tcp(m).map(|(ip, port)| (ip.to_string(), port));
        let some = |ip: &str, port| Some((ip.to_string(), port));
        assert_eq!(tcp("/ip6/::1/tcp/8115"), some("::1", 8115));
        assert_eq!(tcp("/ip6/fe80::1/tcp/8115/ws"), some("fe80::1", 8115));
        assert_eq!(
            tcp("/ip4/10.0.0.1/tcp/8115/p2p/QmcPUJmhW9spYCLrv9mRcJGBF37UTVjkBPVozs4b89YyV4"),
            some("10.0.0.1", 8115)
        );
        // CKB's `/tls` carries the server name.
        assert_eq!(
            tcp("/ip4/10.0.0.1/tcp/443/tls/node.example/ws"),
            some("10.0.0.1", 443)
        );
        for bad in [
            "",
            "/",
            "ip4/10.0.0.1/tcp/8115",
            "/ip4/10.0.0.1",
            "/ip4/10.0.0.1/udp/8115/quic-v1",
            "/dns6/node.example/tcp/8115",
            "/ip4/10.0.0.256/tcp/8115",
            "/ip6/::1/tcp/65536",
            "/ip6/::1/tcp/",
            "/tcp/8115",
        ] {
            assert_eq!(tcp(bad), None, "{bad}");
        }
    }

    /// An HTTP/1.1 server on loopback for one request: sends `status` and `chunks` with chunked
    /// transfer encoding and keeps the connection open (keep-alive) until the client closes it,
    /// so a client that reads to the end of the stream never finishes. Returns the request.
    fn serve_chunked(
        status: &'static str,
        chunks: &'static [&'static str],
    ) -> (SocketAddr, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("request line");
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().expect("length");
                }
                request.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            request.push_str(&String::from_utf8(body).expect("utf-8"));
            tx.send(request).expect("send");
            let mut out = stream;
            write!(
                out,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
            )
            .expect("head");
            for (i, chunk) in chunks.iter().enumerate() {
                // A chunk extension on one of them, which the protocol allows.
                let ext = if i == 1 { ";name=value" } else { "" };
                write!(out, "{:x}{ext}\r\n{chunk}\r\n", chunk.len()).expect("chunk");
                out.flush().expect("flush");
            }
            write!(out, "0\r\n\r\n").expect("last chunk");
            out.flush().expect("flush");
            // Keep-alive: hold the connection until the client goes away.
            let _ = reader.read(&mut [0; 64]);
        });
        (addr, rx)
    }

    #[test]
    fn rpc_reply_chunked_with_keep_alive() {
        let (addr, request) = serve_chunked(
            "200 OK",
            &[
                r#"{"jsonrpc":"2.0","result":{"vers"#,
                r#"ion":"0.210.0 (abc 2026-01-01)","node_id":"Qm"#,
                r#"X"},"id":1}"#,
            ],
        );
        let t0 = Instant::now();
        let v = call(addr, "local_node_info", serde_json::json!([])).expect("reply");
        // Well before any timeout: the end of the body is the last chunk, not a closed stream.
        assert!(t0.elapsed() < TIMEOUT, "{:?}", t0.elapsed());
        assert_eq!(v["version"], "0.210.0 (abc 2026-01-01)");
        assert_eq!(v["node_id"], "QmX");

        let request = request.recv().expect("request");
        let (head, body) = request.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("POST / HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("\r\ncontent-type: application/json"),
            "{head}"
        );
        let body: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["method"], "local_node_info");
        assert_eq!(body["params"], serde_json::json!([]));
    }

    #[test]
    fn rpc_errors_are_none() {
        // A JSON-RPC error (the Net module disabled, say) has no result.
        let (addr, _rq) = serve_chunked(
            "200 OK",
            &[r#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":1}"#],
        );
        assert_eq!(call(addr, "get_peers", serde_json::json!([])), None);
        let (addr, _rq) = serve_chunked("500 Internal Server Error", &["{}"]);
        assert_eq!(call(addr, "get_peers", serde_json::json!([])), None);
        let (addr, _rq) = serve_chunked("200 OK", &["not JSON"]);
        assert_eq!(call(addr, "get_peers", serde_json::json!([])), None);

        // Nobody listening: refused at once.
        let closed = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        assert_eq!(call(closed, "get_peers", serde_json::json!([])), None);
    }

    #[test]
    fn rpc_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (done_tx, done_rx) = mpsc::channel::<()>();
        thread::spawn(move || {
            let held: TcpStream = listener.accept().expect("accept").0;
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
            drop(held);
        });
        let t0 = Instant::now();
        assert_eq!(call(addr, "get_peers", serde_json::json!([])), None);
        let took = t0.elapsed();
        drop(done_tx);
        assert!(took >= TIMEOUT && took < REPLY_BUDGET, "{took:?}");
    }

    #[test]
    fn rpc_that_trickles_is_cut_off() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            let mut s = listener.accept().expect("accept").0;
            let _ = s.read(&mut [0; 4096]);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{{");
            // A byte at a time, each well within the per-read timeout, for far longer than
            // the reply budget; ends when the client hangs up.
            for _ in 0..50 {
                thread::sleep(TIMEOUT / 2);
                if s.write_all(b" ").is_err() {
                    break;
                }
            }
        });
        let t0 = Instant::now();
        assert_eq!(call(addr, "get_peers", serde_json::json!([])), None);
        let took = t0.elapsed();
        assert!(took >= REPLY_BUDGET && took < 2 * REPLY_BUDGET, "{took:?}");
    }
}
