//! The `ckb-probe` command line: one file per verb under `cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ckb-probe",
    version,
    about = "Deep observability for CKB full nodes: RocksDB, network and syscall tracing with eBPF",
    long_about = None
)]
struct Cli {
    /// Log level for ckb-probe's own diagnostics (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that this machine (and optionally a target process) can be traced.
    Check(cmd::check::Args),
    /// Analyse a binary's symbols: RocksDB linkage, traceable functions, Rust surface.
    Symbols(cmd::symbols::Args),
    /// Trace RocksDB operations of a CKB node: QPS, latency percentiles, bytes, per column family.
    Rocksdb(cmd::rocksdb::Args),
    /// Trace a CKB node's TCP peers: bytes, rates, retransmits, connection events, churn alerts.
    Net(cmd::net::Args),
    /// Trace the system calls of a CKB node per thread role: rates, errors, latency, I/O sizes.
    Syscall(cmd::syscall::Args),
    /// Serve the node's metrics to Prometheus (/metrics, /healthz) while tracing it.
    Export(cmd::export::Args),
    /// All layers on one interactive screen (TUI): Overview, RocksDB, Network and Syscall tabs.
    Overview(cmd::overview::Args),
    /// Show a recording (`--record FILE` or `--json` output) again: tables or NDJSON.
    Replay(cmd::replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let result = match cli.command {
        Command::Check(a) => cmd::check::run(a),
        Command::Symbols(a) => cmd::symbols::run(a),
        Command::Rocksdb(a) => cmd::rocksdb::run(a),
        Command::Net(a) => cmd::net::run(a),
        Command::Syscall(a) => cmd::syscall::run(a),
        Command::Replay(a) => cmd::replay::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Overview(a) => cmd::overview::run(a),
    };
    match result {
        Ok(code) => code,
        // `ckb-probe ... | head`: the reader has what it wanted; probes were detached on the
        // way out (dropping the engine), so this is a normal end.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line (plus causes) naming the problem and what to do; never a backtrace.
            eprintln!("ckb-probe: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {}", ckb_probe::probe::cause_text(cause));
            }
            ExitCode::from(ckb_probe::error::exit_code(&e))
        }
    }
}
