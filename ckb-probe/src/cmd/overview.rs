//! `ckb-probe overview`: every layer that can attach (RocksDB, syscall, network) on one
//! interactive screen with four tabs. A layer that cannot attach says why there; the others
//! keep working.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Result;
use ckb_probe::{
    error::InputError,
    model::{End, LayerName, Lifecycle, Report},
    session::{self, Session, net::NetOptions, rocksdb::RocksOptions},
    view::tui::term::{self, Exit},
};

use super::runner::{self, Recording, RunArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
    /// Slow-operation log threshold in microseconds (RocksDB tab).
    #[arg(long, default_value_t = 1_000)]
    pub threshold: u64,
    /// Seconds of baseline learning before anomaly, churn and correlation alerts may fire.
    #[arg(long, default_value_t = 300.0)]
    pub warmup: f64,
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
    /// The P2P listening port(s); default: CKB's `[network] listen_addresses`, else every
    /// port the target listens on.
    #[arg(long = "listen-port", value_name = "PORT")]
    pub listen_port: Vec<u16>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.run.json {
        return Err(InputError::Other(
            "overview is a full-screen view and has no --json; for NDJSON of every layer use \
             `ckb-probe rocksdb --with syscall,net --json` (or keep the TUI and add --record FILE)"
                .into(),
        )
        .into());
    }
    let limits = args.run.limits()?;
    let warmup = runner::warmup(args.warmup)?;
    if args.listen_port.contains(&0) {
        return Err(
            InputError::Other("--listen-port must be a TCP port from 1 to 65535".into()).into(),
        );
    }
    // Checked before anything is attached: without a terminal there is nothing to draw on.
    if !(std::io::stdout().is_terminal() && std::io::stdin().is_terminal()) {
        return Err(InputError::Other(
            "overview needs a terminal on stdin and stdout; for line output use \
             `ckb-probe rocksdb --with syscall,net` (add --json for NDJSON)"
                .into(),
        )
        .into());
    }
    let record = args
        .run
        .record
        .as_deref()
        .map(Recording::create)
        .transpose()?;
    let process = runner::target(args.run.pid)?;
    let pid = process.pid;
    let opts = session::Options {
        layers: LayerName::ALL.to_vec(),
        // The screen shows why a layer is missing; the others keep working.
        require_all: false,
        interval: limits.interval,
        warmup,
        rocksdb: RocksOptions {
            slow_threshold_us: Some(args.threshold),
            cf: !args.no_cf,
            iter_next: !args.no_iter_next,
            lightweight: args.lightweight,
            symbols_from: args.symbols_from.clone(),
        },
        net: NetOptions {
            listen_ports: args.listen_port.clone(),
            ..NetOptions::default()
        },
        chain: true,
        follow: args.run.follow,
        keep_baseline: args.run.keep_baseline,
    };
    eprintln!("ckb-probe: attaching to PID {pid} ...");
    let session = match Session::start(&process, opts) {
        Ok(s) => s,
        Err(e) => {
            if let Some(rec) = record {
                rec.discard();
            }
            return Err(e);
        }
    };
    let mut sink = Recorder(record);
    let (exit, pid) = term::run(session, limits.run, &mut sink)?;
    match exit {
        Exit::Ended(End::TargetExited) => {
            eprintln!("ckb-probe: target process {pid} exited; probes detached.")
        }
        _ => eprintln!("ckb-probe: overview of PID {pid} ended; probes detached."),
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the screen's reports also go: the `--record` file, if any.
struct Recorder(Option<Recording>);

impl session::Sink for Recorder {
    fn report(&mut self, r: &Report) -> Result<()> {
        self.0.as_mut().map_or(Ok(()), |rec| rec.report(r))
    }

    fn lifecycle(&mut self, e: &Lifecycle) -> Result<()> {
        self.0.as_mut().map_or(Ok(()), |rec| rec.lifecycle(e))
    }
}
