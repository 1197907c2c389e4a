//! `ckb-probe export`: attach the layers to a CKB node and serve their metrics to Prometheus.
//! The run loop polls the session and, after each interval, renders the metrics once and
//! publishes the page; the HTTP threads only ever read the last published page, so a scrape
//! (or a client that never reads) cannot delay a poll.

use std::{
    net::{SocketAddr, TcpListener},
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;
use ckb_probe::{
    error::InputError,
    http::{self, Page, Shared},
    model::LayerName,
    session::{self, Session, net::NetOptions, rocksdb::RocksOptions},
    view::prometheus::{Exporter, Format, Options},
};

use super::runner;

#[derive(clap::Args)]
pub struct Args {
    /// PID of the CKB node (or any process); default: the one process running `ckb run`.
    #[arg(short, long)]
    pub pid: Option<u32>,
    /// Address to serve on. Loopback by default: any other address lets whoever reaches it read
    /// the metrics (put TLS and authentication in front, see docs/USAGE.md).
    #[arg(long, default_value = "127.0.0.1:9190", value_name = "ADDR:PORT")]
    pub listen: String,
    /// Layers to run (comma-separated: rocksdb, syscall, net). A layer that cannot attach is
    /// reported by `ckb_probe_layer_up` and the others run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rocksdb,syscall,net",
        value_name = "LAYERS"
    )]
    pub layers: Vec<String>,
    /// Seconds between polls of the kernel maps (the metrics are this fresh).
    #[arg(short, long, default_value_t = 1.0)]
    pub interval: f64,
    /// Seconds of baseline learning before anomaly, churn and correlation alerts may fire.
    #[arg(long, default_value_t = 300.0)]
    pub warmup: f64,
    /// Peers that get their own `peer` label (the busiest); the rest are summed as "other".
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top_peers: usize,
    /// The node's P2P listening port(s), for the net layer (default: CKB's
    /// `[network] listen_addresses`, else every port the node listens on).
    #[arg(long = "p2p-port", value_name = "PORT")]
    pub p2p_port: Vec<u16>,
    /// Do not trace rocksdb_iter_next (its probe is single-stepped, costly under heavy iteration).
    #[arg(long)]
    pub no_iter_next: bool,
    /// Lightweight mode: entry probes only (counts and the bytes known at entry; no latency,
    /// GET bytes, hits, misses, errors or slow log), for the lowest cost per call.
    #[arg(long)]
    pub lightweight: bool,
    /// Do not resolve column families (no reads of RocksDB's objects in the target).
    #[arg(long)]
    pub no_cf: bool,
    /// The node's binary is stripped: take the function offsets from this unstripped build of
    /// it (it must have the same build-id).
    #[arg(long, value_name = "FILE")]
    pub symbols_from: Option<std::path::PathBuf>,
    /// Stop after this many seconds (default: until SIGINT or SIGTERM).
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// When the node exits, wait for it to come back (same executable, or `ckb run` with the
    /// same data directory) and export the new process; counters keep growing across the gap.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: keep the learnt baselines across a restart instead of a new warm-up.
    #[arg(long, requires = "follow")]
    pub keep_baseline: bool,
}

/// The listening address: `HOST:PORT` (IPv6 in brackets), or `localhost:PORT`.
fn listen_addr(s: &str) -> Result<SocketAddr> {
    let bad = || {
        InputError::Other(format!(
            "--listen {s}: not an address; use IP:PORT, e.g. 127.0.0.1:9190 or [::1]:9190"
        ))
    };
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Ok(s.parse().map_err(|_| bad())?)
}

fn bind(addr: SocketAddr, asked: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "is in use (another exporter?); choose a free port with --listen".to_string()
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "is not an address of this machine; use one of its addresses, e.g. 127.0.0.1"
                    .to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                "may not be bound by this user (ports below 1024 need privileges); choose a port above 1023"
                    .to_string()
            }
            _ => format!("cannot be bound ({e})"),
        };
        InputError::Other(format!("--listen {asked}: {addr} {why}")).into()
    })
}

fn layers(names: &[String]) -> Result<Vec<LayerName>> {
    let mut out = Vec::new();
    for n in names {
        match LayerName::from_name(n.trim()) {
            Some(l) if !out.contains(&l) => out.push(l),
            Some(_) => {}
            None => {
                return Err(InputError::Other(format!(
                    "--layers {n}: unknown layer; use a comma-separated list of {}",
                    LayerName::ALL.map(LayerName::name).join(", ")
                ))
                .into());
            }
        }
    }
    if out.is_empty() {
        return Err(InputError::Other("--layers: name at least one layer".into()).into());
    }
    Ok(out)
}

fn page(exporter: &Exporter, up: Option<String>, down: String, last: Option<Instant>) -> Page {
    Page {
        prometheus: exporter.render(Format::Prometheus).into(),
        openmetrics: exporter.render(Format::OpenMetrics).into(),
        up,
        down,
        last_poll: last,
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    // Every input is checked before anything is attached: a bad flag leaves no probe behind.
    let layers = layers(&args.layers)?;
    let addr = listen_addr(&args.listen)?;
    let interval = runner::positive("interval", args.interval)?;
    let warmup = runner::warmup(args.warmup)?;
    let duration = args
        .duration
        .map(|d| runner::positive("duration", d))
        .transpose()?;
    if args.p2p_port.contains(&0) {
        return Err(
            InputError::Other("--p2p-port must be a TCP port from 1 to 65535".into()).into(),
        );
    }
    let process = runner::target(args.pid)?;
    let listener = bind(addr, &args.listen)?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "ckb-probe: warning: serving on {addr}, not loopback: whoever reaches it reads the \
             node's metrics; put TLS and authentication in front (docs/USAGE.md, `export`)"
        );
    }
    let opts = session::Options {
        layers,
        require_all: false,
        interval,
        warmup,
        rocksdb: RocksOptions {
            slow_threshold_us: None,
            cf: !args.no_cf,
            iter_next: !args.no_iter_next,
            lightweight: args.lightweight,
            symbols_from: args.symbols_from.clone(),
        },
        net: NetOptions {
            listen_ports: args.p2p_port.clone(),
            ..NetOptions::default()
        },
        chain: false,
        follow: args.follow,
        keep_baseline: args.keep_baseline,
    };
    let mut session = Session::start(&process, opts)?;
    for note in session.notes() {
        eprintln!("ckb-probe: {note}");
    }
    for u in session.unavailable() {
        eprintln!(
            "ckb-probe: layer {} unavailable: {}",
            u.layer.name(),
            u.reason
        );
    }
    let mut pid = process.pid;
    let traced = session
        .layers()
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ");
    let mut up = format!("ok: tracing {traced} of PID {pid} ({})", session.node());

    let mut exporter = Exporter::new(Options {
        top_peers: args.top_peers,
    });
    // A first report at once, so the first scrape already names the target and its layers.
    let mut last_ok = None;
    match session.tick(Instant::now()) {
        Ok(r) => {
            exporter.observe(&r, SystemTime::now());
            last_ok = Some(Instant::now());
        }
        Err(e) => {
            tracing::warn!("first poll failed: {e:#}");
            exporter.poll_failed();
        }
    }
    // Unhealthy when no poll succeeded for 5 intervals (at least 10 s): the loop is stuck.
    let stale = (interval * 5).max(Duration::from_secs(10));
    let shared = Shared::new(
        page(&exporter, Some(up.clone()), String::new(), last_ok),
        stale,
    );
    http::spawn(listener, Arc::clone(&shared))?;
    eprintln!(
        "ckb-probe: tracing {traced} of PID {pid}; serving http://{addr}/metrics; Ctrl-C to stop"
    );

    let term = session::stop_flag()?;
    let (idle, busy) = (Duration::from_millis(100), Duration::from_millis(10));
    let start = session.start_time();
    let mut next = Instant::now() + interval;
    let mut session = Some(session);
    // With --follow, the session of the process that exited: it finds and attaches to the
    // successor (the shared step, as `overview --follow` takes it), with --keep-baseline
    // handing over its baselines, and is dropped once the new session runs.
    let mut gone: Option<Session> = None;
    loop {
        if term.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if duration.is_some_and(|d| now >= start + d) {
            break;
        }
        let Some(s) = session.as_mut() else {
            // The target is gone: keep serving the final counters until told to stop, or
            // (--follow) until its successor runs.
            match gone.as_mut().and_then(Session::follow_successor) {
                Some(Ok(fresh)) => {
                    eprintln!(
                        "ckb-probe: attached to PID {} (was {pid}); exporting again",
                        fresh.pid()
                    );
                    pid = fresh.pid();
                    up = format!("ok: tracing {traced} of PID {pid} ({})", fresh.node());
                    // The old process's probes go before the new ones report.
                    drop(gone.take());
                    next = Instant::now() + interval;
                    session = Some(fresh);
                }
                Some(Err(e)) => {
                    tracing::warn!("{e:#}");
                    std::thread::sleep(Duration::from_secs(1));
                }
                None => std::thread::sleep(Duration::from_millis(250)),
            }
            continue;
        };
        let alive = s.target_alive();
        let drained = s.poll();
        if now >= next || !alive {
            // The final read after the target's exit takes everything it did up to its end.
            match s.tick(Instant::now()) {
                Ok(r) => {
                    exporter.observe(&r, SystemTime::now());
                    last_ok = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!("poll failed: {e:#}");
                    exporter.poll_failed();
                }
            }
            next += interval;
            if next < now {
                next = now + interval;
            }
            if alive {
                shared.publish(page(&exporter, Some(up.clone()), String::new(), last_ok));
            } else {
                exporter.target_exited();
                let down = format!(
                    "target exited: PID {pid} is gone; the metrics keep the counters of its whole run"
                );
                shared.publish(page(&exporter, None, down, last_ok));
                // Detaching takes a while (the kernel waits for each uprobe to be unused): the
                // final page is out first.
                let old = session.take().expect("a session while alive was checked");
                if args.follow {
                    gone = Some(old);
                    eprintln!(
                        "ckb-probe: target process {pid} exited; waiting for the node to come back (--follow)"
                    );
                } else {
                    drop(old);
                    eprintln!(
                        "ckb-probe: target process {pid} exited; probes detached, still serving its final metrics"
                    );
                }
                continue;
            }
        }
        // While events flow, come back sooner so ring buffers never fill up.
        let poll = if drained > 0 { busy } else { idle };
        std::thread::sleep(next.saturating_duration_since(Instant::now()).min(poll));
    }
    drop(session);
    drop(gone);
    eprintln!("ckb-probe: stopped; probes detached");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            listen_addr("127.0.0.1:9190").unwrap(),
            "127.0.0.1:9190".parse().unwrap()
        );
        assert_eq!(listen_addr("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(
            listen_addr("localhost:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        for bad in ["9190", "127.0.0.1", "host:1", "127.0.0.1:99999", ""] {
            let e = listen_addr(bad).unwrap_err();
            assert_eq!(ckb_probe::error::exit_code(&e), 2, "{bad}");
        }
    }

    #[test]
    fn layer_names() {
        let names = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            layers(&names(&["net", "rocksdb", "net"])).unwrap(),
            vec![LayerName::Net, LayerName::Rocksdb]
        );
        let e = layers(&names(&["rocksdb", "disk"])).unwrap_err();
        assert!(e.to_string().contains("disk"), "{e}");
        assert_eq!(ckb_probe::error::exit_code(&e), 2);
    }
}
