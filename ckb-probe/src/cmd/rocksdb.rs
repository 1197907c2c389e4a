//! `ckb-probe rocksdb`: attach the RocksDB layer to a CKB node and report every interval;
//! with `--with syscall,net`, the other layers run in the same process and the cross-layer
//! correlation rules apply.

use std::process::ExitCode;

use anyhow::Result;
use ckb_probe::{
    error::InputError,
    model::LayerName,
    session::{self, net::NetOptions, rocksdb::RocksOptions},
    view::{ndjson, text},
};

use super::runner::{self, Printer, RunArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
    /// Show latency distributions (since start) instead of the rate table.
    #[arg(long)]
    pub histogram: bool,
    /// Show the slow-operation log (operations at or above --threshold).
    #[arg(long)]
    pub slow: bool,
    /// Slow-operation threshold in microseconds.
    #[arg(long, default_value_t = 1_000)]
    pub threshold: u64,
    /// Break each operation down by column family (CKB column).
    #[arg(long)]
    pub by_cf: bool,
    /// Seconds of baseline learning before anomaly alerts may fire.
    #[arg(long, default_value_t = 300.0)]
    pub warmup: f64,
    /// Do not trace rocksdb_iter_next (its probe is single-stepped, costly under heavy iteration).
    #[arg(long)]
    pub no_iter_next: bool,
    /// Lightweight mode: entry probes only (counts and the bytes known at entry; no latency,
    /// GET bytes, hits, misses, errors or slow log), for the lowest cost per call.
    #[arg(long, conflicts_with_all = ["slow", "histogram"])]
    pub lightweight: bool,
    /// Do not resolve column families (no reads of RocksDB's objects in the target).
    #[arg(long)]
    pub no_cf: bool,
    /// The node's binary is stripped: take the function offsets from this unstripped build of
    /// it (it must have the same build-id).
    #[arg(long, value_name = "FILE")]
    pub symbols_from: Option<std::path::PathBuf>,
    /// Run other layers in the same process too (comma-separated: syscall, net); their
    /// reports follow the RocksDB table, and cross-layer correlation alerts are on.
    #[arg(long, value_delimiter = ',', value_name = "LAYERS")]
    pub with: Vec<String>,
}

/// Layers `--with` can add.
const WITH: [LayerName; 2] = [LayerName::Syscall, LayerName::Net];

pub fn run(args: Args) -> Result<ExitCode> {
    let limits = args.run.limits()?;
    let warmup = runner::warmup(args.warmup)?;
    let mut layers = vec![LayerName::Rocksdb];
    for w in &args.with {
        match LayerName::from_name(w).filter(|l| WITH.contains(l)) {
            Some(l) if !layers.contains(&l) => layers.push(l),
            Some(_) => {}
            None => {
                return Err(InputError::Other(format!(
                    "--with {w}: unknown layer; use a comma-separated list of {}",
                    WITH.map(LayerName::name).join(", ")
                ))
                .into());
            }
        }
    }
    let process = runner::target(args.run.pid)?;
    let opts = session::Options {
        layers,
        require_all: true,
        interval: limits.interval,
        warmup,
        rocksdb: RocksOptions {
            slow_threshold_us: args.slow.then_some(args.threshold),
            cf: !args.no_cf,
            iter_next: !args.no_iter_next,
            lightweight: args.lightweight,
            symbols_from: args.symbols_from.clone(),
        },
        net: NetOptions::default(),
        chain: false,
        follow: args.run.follow,
        keep_baseline: args.run.keep_baseline,
    };
    let show = text::Options {
        rocksdb: text::RocksShow {
            histogram: args.histogram,
            slow: args.slow,
            by_cf: args.by_cf,
        },
        ..text::Options::default()
    };
    // Beside RocksDB, the syscall list in --json is the top 5, like its table.
    let ndjson = ndjson::Options {
        syscall_top: Some(5),
    };
    let printer =
        Printer::new(args.run.json, show, ndjson).recording(args.run.record.as_deref())?;
    runner::run(&process, opts, limits, printer)
}
