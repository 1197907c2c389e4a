//! What serving Prometheus costs: `ckb-probe export` with all three layers on the testbed
//! (RocksDB static, 2 threads, 3,000 iterations/s: about 75,000 traced calls/s), scraped once a
//! second for 30 s like a Prometheus with `scrape_interval: 1s`. Prints figures only:
//!   cargo bench -p ckb-probe --bench export
//! - scrape latency (connect to last byte, Prometheus text format and OpenMetrics), page size
//!   and series count;
//! - ckb-probe's own CPU (user + system, % of one core) and RSS over the scraped period.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{Testbed, ckb_probe};

const SCRAPES: usize = 30;

/// One scrape: (seconds from connect to the last byte, body bytes, series).
fn scrape(addr: &str, accept: &str) -> (f64, usize, usize) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let series = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    (secs, body.len(), series)
}

fn ms_stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] * 1e3;
    format!(
        "min {:.2} ms, median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        q(0.0),
        q(0.5),
        q(0.9),
        q(1.0)
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tb = Testbed::spawn(
        "static",
        &["--threads", "2", "--duration", "45", "--rate", "3000"],
    );
    let pid = tb.pid.to_string();
    let mut child = Command::new(ckb_probe())
        .args(["export", "--pid", &pid, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ckb-probe export");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "export ended early");
        if let Some(rest) = line.split("serving http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    tb.start();
    // Let the layers reach steady state (thread census, peers, first intervals).
    std::thread::sleep(Duration::from_secs(3));
    let probe_pid = child.id();
    let (cpu0, _) = support::proc_usage(probe_pid).expect("usage");
    let t0 = Instant::now();
    let (mut text_lat, mut om_lat) = (Vec::new(), Vec::new());
    let (mut bytes, mut series, mut max_rss) = (0, 0, 0);
    for i in 0..SCRAPES {
        let next = t0 + Duration::from_secs(i as u64 + 1);
        let (s, b, n) = scrape(&addr, "text/plain;version=0.0.4");
        text_lat.push(s);
        (bytes, series) = (b, n);
        // Prometheus itself asks for OpenMetrics first.
        let (s, _, _) = scrape(
            &addr,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        );
        om_lat.push(s);
        if let Some((_, rss)) = support::proc_usage(probe_pid) {
            max_rss = max_rss.max(rss);
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let (cpu1, rss) = support::proc_usage(probe_pid).expect("usage");
    let wall = t0.elapsed().as_secs_f64();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(probe_pid as i32, libc::SIGINT) };
    let _ = child.wait();
    let truth = tb.finish();
    let calls: u64 = truth["functions"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(f, _)| truth["latency_ns"].get(f.as_str()).is_some())
        .map(|(_, v)| v["calls"].as_u64().unwrap_or(0))
        .sum();
    let secs = truth["duration_secs"].as_f64().unwrap_or(1.0);
    println!(
        "ckb-probe export, all layers (rocksdb, syscall, net), 1 s poll interval, on the testbed at {:.0} traced calls/s",
        calls as f64 / secs
    );
    println!("  /metrics page: {bytes} bytes, {series} series (Prometheus text format)");
    println!(
        "  scrape latency, text format ({SCRAPES} scrapes, 1 s apart): {}",
        ms_stats(text_lat)
    );
    println!(
        "  scrape latency, OpenMetrics  ({SCRAPES} scrapes, 1 s apart): {}",
        ms_stats(om_lat)
    );
    println!(
        "  ckb-probe CPU while scraped: {:.1} % of one core (user + system, {wall:.0} s); RSS {} KiB now, {} KiB max",
        100.0 * (cpu1 - cpu0) / wall,
        rss,
        max_rss
    );
}
