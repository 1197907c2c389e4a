//! A TCP workload on loopback with exactly known connections and byte counts: the ground truth
//! for `ckb-probe net`. Needs no RocksDB.
//!
//! It listens on 127.0.0.1 and [::1] (ephemeral ports), prints `READY pid=P port4=A port6=B`,
//! waits for `--start-file`, then connects `--conns` times to each of its own listeners and once
//! to each `--connect` endpoint. Every connection follows one protocol: the client writes
//! `--send` bytes and shuts down its write side; the server reads to EOF, writes `--reply`
//! bytes and closes; the client reads to EOF and closes. The server side accepts anyone (its
//! own clients, and `--expect-inbound` outside clients). Byte counts are the sums of what the
//! read/write system calls returned. The truth (every connection, both sides) is written as
//! JSON to `--output`.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use clap::Parser;
use serde::Serialize;

#[derive(Parser)]
#[command(about = "Loopback TCP workload with exact ground truth for ckb-probe net")]
struct Args {
    /// Print READY, then wait for this file before connecting.
    #[arg(long)]
    start_file: Option<PathBuf>,
    /// Where to write the ground-truth JSON (default: stdout, last line).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Connections to each of its own listeners (IPv4 and IPv6).
    #[arg(long, default_value_t = 5)]
    conns: u32,
    /// Bytes each client writes.
    #[arg(long, default_value_t = 100_000)]
    send: u64,
    /// Bytes each server writes back.
    #[arg(long, default_value_t = 7_777)]
    reply: u64,
    /// Largest single write.
    #[arg(long, default_value_t = 16_384)]
    chunk: usize,
    /// Also connect once to each of these servers (same protocol), e.g. 127.0.0.1:9000, [::1]:9000.
    #[arg(long)]
    connect: Vec<SocketAddr>,
    /// Wait (up to 30 s) for this many connections from other processes before finishing.
    #[arg(long, default_value_t = 0)]
    expect_inbound: u32,
    /// Seconds to stay alive after the workload (so late events are still traced).
    #[arg(long, default_value_t = 0.5)]
    linger: f64,
}

/// One connection as this process saw it.
#[derive(Clone, Debug, Serialize)]
struct Conn {
    /// The other end.
    remote: String,
    port: u16,
    local_port: u16,
    family: &'static str,
    sent: u64,
    received: u64,
}

#[derive(Default, Serialize)]
struct Truth {
    pid: u32,
    port4: u16,
    port6: u16,
    outbound: Vec<Conn>,
    inbound: Vec<Conn>,
}

/// The endpoints, read while connected (after the peer's FIN the socket may already be in
/// CLOSE, where `getpeername` fails).
fn conn(s: &TcpStream) -> std::io::Result<Conn> {
    let peer = s.peer_addr()?;
    Ok(Conn {
        remote: peer.ip().to_string(),
        port: peer.port(),
        local_port: s.local_addr()?.port(),
        family: if peer.is_ipv4() { "ipv4" } else { "ipv6" },
        sent: 0,
        received: 0,
    })
}

fn write_counted(s: &mut TcpStream, total: u64, chunk: usize) -> std::io::Result<u64> {
    let buf = vec![0x5au8; chunk.max(1)];
    let mut sent = 0u64;
    while sent < total {
        let n = ((total - sent) as usize).min(buf.len());
        sent += s.write(&buf[..n])? as u64;
    }
    Ok(sent)
}

fn read_to_eof(s: &mut TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 65_536];
    let mut got = 0u64;
    loop {
        match s.read(&mut buf)? {
            0 => return Ok(got),
            n => got += n as u64,
        }
    }
}

fn client(addr: SocketAddr, args: &Args) -> std::io::Result<Conn> {
    let mut s = TcpStream::connect(addr)?;
    let mut c = conn(&s)?;
    c.sent = write_counted(&mut s, args.send, args.chunk)?;
    s.shutdown(Shutdown::Write)?;
    c.received = read_to_eof(&mut s)?;
    drop(s);
    Ok(c)
}

fn serve(listener: TcpListener, reply: u64, chunk: usize, truth: Arc<Mutex<Truth>>) {
    for s in listener.incoming() {
        let Ok(mut s) = s else { continue };
        let truth = Arc::clone(&truth);
        thread::spawn(move || {
            let result = (|| {
                let mut c = conn(&s)?;
                c.received = read_to_eof(&mut s)?;
                c.sent = write_counted(&mut s, reply, chunk)?;
                drop(s);
                Ok::<_, std::io::Error>(c)
            })();
            match result {
                Ok(c) => truth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .inbound
                    .push(c),
                Err(e) => eprintln!("netbed: server connection failed: {e}"),
            }
        });
    }
}

fn run(args: Args) -> Result<(), String> {
    let l4 = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1: {e}"))?;
    let l6 = TcpListener::bind("[::1]:0").map_err(|e| format!("bind [::1]: {e}"))?;
    let port4 = l4.local_addr().map_err(|e| e.to_string())?.port();
    let port6 = l6.local_addr().map_err(|e| e.to_string())?.port();
    let truth = Arc::new(Mutex::new(Truth {
        pid: std::process::id(),
        port4,
        port6,
        ..Truth::default()
    }));
    for l in [l4, l6] {
        let t = Arc::clone(&truth);
        let (reply, chunk) = (args.reply, args.chunk);
        thread::spawn(move || serve(l, reply, chunk, t));
    }
    println!(
        "READY pid={} port4={port4} port6={port6}",
        std::process::id()
    );
    let _ = std::io::stdout().flush();
    if let Some(f) = &args.start_file {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !f.exists() {
            if Instant::now() > deadline {
                return Err(format!("{} did not appear within 120 s", f.display()));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    let mut targets = Vec::new();
    for _ in 0..args.conns {
        targets.push(SocketAddr::from(([127, 0, 0, 1], port4)));
        targets.push(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port6)));
    }
    targets.extend(args.connect.iter().copied());
    for addr in targets {
        let c = client(addr, &args).map_err(|e| format!("connection to {addr}: {e}"))?;
        truth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .outbound
            .push(c);
    }

    // Every own connection is served too; then wait for the outside clients.
    let want = (2 * args.conns + args.expect_inbound) as usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = truth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .inbound
            .len();
        if have >= want {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {have} of {want} inbound connections completed"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_secs_f64(args.linger.clamp(0.0, 60.0)));

    let text = {
        let t = truth.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_string(&*t).map_err(|e| e.to_string())?
    };
    match &args.output {
        Some(p) => std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netbed: error: {e}");
            ExitCode::FAILURE
        }
    }
}
