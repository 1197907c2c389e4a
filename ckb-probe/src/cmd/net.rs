//! `ckb-probe net`: attach the network layer to a CKB node (or any process) and report its
//! TCP peers, connection events and churn alerts every interval. The same layer runs beside
//! the RocksDB layer with `ckb-probe rocksdb --with net`.

use std::process::ExitCode;

use anyhow::Result;
use ckb_probe::{
    error::InputError,
    model::LayerName,
    session::{self, net::NetOptions},
    view::{ndjson, text},
};

use super::runner::{self, Printer, RunArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
    /// The P2P listening port(s): inbound connections to other ports (RPC, metrics) are not
    /// peers. Default: CKB's `[network] listen_addresses`, else every port the target listens on.
    #[arg(long = "listen-port", value_name = "PORT")]
    pub listen_port: Vec<u16>,
    /// Also list connections that are not P2P (clients of the node's RPC and other services).
    #[arg(long)]
    pub all: bool,
    /// Connection events shown under the table.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
    /// Peers shown in the table (JSON lists them all).
    #[arg(long, default_value_t = 30)]
    pub rows: usize,
    /// Seconds before churn alerts may fire.
    #[arg(long, default_value_t = 300.0)]
    pub warmup: f64,
    /// Use the kprobe fallback even where the tracepoints exist (testing).
    #[arg(long, hide = true)]
    pub force_kprobes: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let limits = args.run.limits()?;
    let warmup = runner::warmup(args.warmup)?;
    if args.listen_port.contains(&0) {
        return Err(
            InputError::Other("--listen-port must be a TCP port from 1 to 65535".into()).into(),
        );
    }
    let process = runner::target(args.run.pid)?;
    let opts = session::Options {
        layers: vec![LayerName::Net],
        interval: limits.interval,
        warmup,
        net: NetOptions {
            listen_ports: args.listen_port.clone(),
            all: args.all,
            force_kprobes: args.force_kprobes,
        },
        follow: args.run.follow,
        keep_baseline: args.run.keep_baseline,
        ..session::Options::default()
    };
    let show = text::Options {
        net: text::NetShow {
            rows: args.rows,
            events: args.events,
        },
        ..text::Options::default()
    };
    let printer = Printer::new(args.run.json, show, ndjson::Options::default())
        .recording(args.run.record.as_deref())?;
    runner::run(&process, opts, limits, printer)
}
