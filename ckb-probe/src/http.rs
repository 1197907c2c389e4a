//! The exporter's HTTP server: `GET /metrics`, `GET /healthz` and an index, each answered from
//! the last page the run loop published. A request never reaches the session: the run loop
//! renders a page after each poll and swaps it in (a mutex held for one `Arc` clone), and a
//! connection thread writes that page out at whatever pace its client reads.
//!
//! Plain `std::net` rather than a server crate, because the exporter must bound what a client
//! can hold: every connection gets read and write timeouts and there is a cap on connections at
//! once (a client past it is closed at once). tiny_http 0.12, the usual small blocking server,
//! has neither (one thread per connection, without limit, and no socket timeouts), so a client
//! that connects and never sends would keep a thread for good. The protocol needed here is a
//! request line and one header; every response closes its connection.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::view::prometheus::Format;

/// One published state of the exporter.
#[derive(Clone, Debug)]
pub struct Page {
    /// `/metrics` in the Prometheus text format.
    pub prometheus: Arc<str>,
    /// `/metrics` in OpenMetrics.
    pub openmetrics: Arc<str>,
    /// What `/healthz` says while the target is traced (`None`: the probes are detached, and
    /// `down` says why).
    pub up: Option<String>,
    pub down: String,
    /// When the kernel maps were last read successfully.
    pub last_poll: Option<Instant>,
}

/// The page shared between the run loop and the connection threads.
pub struct Shared {
    page: Mutex<Arc<Page>>,
    /// `/healthz` fails when no poll succeeded for this long (a stuck run loop).
    stale_after: Duration,
    started: Instant,
}

impl Shared {
    pub fn new(page: Page, stale_after: Duration) -> Arc<Self> {
        Arc::new(Shared {
            page: Mutex::new(Arc::new(page)),
            stale_after,
            started: Instant::now(),
        })
    }

    pub fn publish(&self, page: Page) {
        *self.page.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(page);
    }

    fn current(&self) -> Arc<Page> {
        Arc::clone(&self.page.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Status and body of `/healthz` now.
    pub fn health(&self) -> (u16, String) {
        let page = self.current();
        match &page.up {
            None => (503, format!("{}\n", page.down)),
            Some(up) => {
                let since = page.last_poll.unwrap_or(self.started).elapsed();
                if since > self.stale_after {
                    (
                        503,
                        format!(
                            "stale: no successful poll of the kernel maps for {:.0} s\n",
                            since.as_secs_f64()
                        ),
                    )
                } else {
                    (200, format!("{up}\n"))
                }
            }
        }
    }
}

/// Connections served at once; more are closed unanswered (Prometheus needs one per scrape).
pub const MAX_CONNECTIONS: usize = 32;
/// A client must send its request within this time.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A client must take each chunk of the response within this time.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// Serves `listener` on a thread of its own (and one thread per connection) until the process
/// ends.
pub fn spawn(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let stream = match conn {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accepting a connection: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    drop(stream);
                    continue;
                }
                let (conn_shared, conn_active) = (Arc::clone(&shared), Arc::clone(&active));
                let spawned =
                    std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(stream, &conn_shared) {
                                tracing::debug!("HTTP connection: {e}");
                            }
                            conn_active.fetch_sub(1, Ordering::AcqRel);
                        });
                if let Err(e) = spawned {
                    // The connection was dropped with the closure: give its slot back.
                    active.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!("could not start a thread for an HTTP connection: {e}");
                }
            }
        })?;
    Ok(addr)
}

/// A parsed request head: method, path without the query, `Accept`.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub accept: Option<String>,
}

/// Parses a request head (everything before the blank line).
pub fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let accept = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("accept")
            .then(|| v.trim().to_string())
    });
    Some(Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        accept,
    })
}

/// Status, content type and body for a request.
pub fn respond(req: &Request, shared: &Shared) -> (u16, &'static str, Arc<str>) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method != "GET" && req.method != "HEAD" {
        return (405, TEXT, "only GET and HEAD\n".into());
    }
    match req.path.as_str() {
        "/metrics" => {
            let page = shared.current();
            let format = Format::negotiate(req.accept.as_deref());
            let body = match format {
                Format::Prometheus => Arc::clone(&page.prometheus),
                Format::OpenMetrics => Arc::clone(&page.openmetrics),
            };
            (200, format.content_type(), body)
        }
        "/healthz" => {
            let (status, body) = shared.health();
            (status, TEXT, body.into())
        }
        "/" => (
            200,
            TEXT,
            "ckb-probe exporter\n/metrics  Prometheus text format (OpenMetrics when asked for)\n/healthz  200 while the probes are attached, else 503\n".into(),
        ),
        _ => (404, TEXT, "not found: try /metrics or /healthz\n".into()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break String::from_utf8_lossy(&buf[..end]).into_owned();
        }
        if buf.len() > MAX_HEAD {
            break String::new();
        }
    };
    let (status, ctype, body, head_only) = match parse_head(&head) {
        Some(req) => {
            let (s, c, b) = respond(&req, shared);
            (s, c, b, req.method == "HEAD")
        }
        None => (
            400,
            "text/plain; charset=utf-8",
            Arc::from("bad request\n"),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(up: bool) -> Page {
        Page {
            prometheus: "text\n".into(),
            openmetrics: "om\n# EOF\n".into(),
            up: up.then(|| "ok".to_string()),
            down: "target exited".into(),
            last_poll: Some(Instant::now()),
        }
    }

    #[test]
    fn parses_request_heads() {
        let r = parse_head("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nACCEPT: text/plain").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.accept.as_deref(), Some("text/plain"));
        assert!(parse_head("GET /metrics").is_none());
        assert!(parse_head("garbage").is_none());
    }

    #[test]
    fn routes_and_health() {
        let shared = Shared::new(page(true), Duration::from_secs(10));
        let req = |m: &str, p: &str, a: Option<&str>| Request {
            method: m.into(),
            path: p.into(),
            accept: a.map(String::from),
        };
        let (s, c, b) = respond(&req("GET", "/metrics", None), &shared);
        assert_eq!((s, &*b), (200, "text\n"));
        assert!(c.starts_with("text/plain; version=0.0.4"));
        let (_, c, b) = respond(
            &req(
                "GET",
                "/metrics",
                Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
            ),
            &shared,
        );
        assert!(c.starts_with("application/openmetrics-text"));
        assert!(b.ends_with("# EOF\n"));
        assert_eq!(respond(&req("GET", "/healthz", None), &shared).0, 200);
        assert_eq!(respond(&req("POST", "/metrics", None), &shared).0, 405);
        assert_eq!(respond(&req("GET", "/nope", None), &shared).0, 404);
        shared.publish(page(false));
        let (s, _, b) = respond(&req("GET", "/healthz", None), &shared);
        assert_eq!((s, &*b), (503, "target exited\n"));
        // A run loop that stopped polling is unhealthy even though the target lives.
        let stale = Shared::new(
            Page {
                last_poll: Some(Instant::now() - Duration::from_secs(30)),
                ..page(true)
            },
            Duration::from_secs(10),
        );
        assert_eq!(stale.health().0, 503);
    }

    /// A client that connects and never reads cannot hold up the others, nor the publisher.
    #[test]
    fn a_hung_client_stalls_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let big = "x".repeat(8 << 20);
        let shared = Shared::new(
            Page {
                prometheus: big.into(),
                ..page(true)
            },
            Duration::from_secs(10),
        );
        let addr = spawn(listener, Arc::clone(&shared)).unwrap();
        // Asks for 8 MiB and never reads: its thread blocks in write (until the timeout).
        let mut hung = TcpStream::connect(addr).unwrap();
        hung.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        // Sends nothing at all.
        let _silent = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        shared.publish(page(true));
        assert!(t.elapsed() < Duration::from_millis(50), "publish blocked");
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK"), "{s}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
