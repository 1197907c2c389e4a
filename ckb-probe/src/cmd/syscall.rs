//! `ckb-probe syscall`: attach the syscall layer to a CKB node and report every interval.
//! The same layer runs beside the RocksDB layer with `ckb-probe rocksdb --with syscall`.

use std::process::ExitCode;

use anyhow::Result;
use ckb_probe::{
    error::InputError,
    model::LayerName,
    session,
    view::{ndjson, text},
};
use ckb_probe_common::syscall::Role;

use super::runner::{self, Printer, RunArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunArgs,
    /// Rows in the tables (default 15); with --json, cuts the `syscalls` list too.
    #[arg(long)]
    pub top: Option<usize>,
    /// Break every role's system calls down, not only file I/O.
    #[arg(long, conflicts_with = "role")]
    pub by_role: bool,
    /// Show only the calls of one thread role: compaction, flush, verify_blocks,
    /// chain_service, tokio, rayon, preload, block_download, header_map, logger, main, other.
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
}

const DEFAULT_TOP: usize = 15;

pub fn run(args: Args) -> Result<ExitCode> {
    let limits = args.run.limits()?;
    runner::at_least_one("top", args.top.map(|t| t as u64))?;
    let role = match &args.role {
        None => None,
        Some(name) => Some(Role::from_name(name).ok_or_else(|| {
            InputError::Other(format!(
                "--role {name}: unknown role; use one of {}",
                Role::ALL.map(Role::name).join(", ")
            ))
        })?),
    };
    let process = runner::target(args.run.pid)?;
    let opts = session::Options {
        layers: vec![LayerName::Syscall],
        interval: limits.interval,
        follow: args.run.follow,
        keep_baseline: args.run.keep_baseline,
        ..session::Options::default()
    };
    let show = text::Options {
        syscall: text::SysShow {
            top: args.top.unwrap_or(DEFAULT_TOP),
            by_role: args.by_role,
            role,
        },
        ..text::Options::default()
    };
    let printer = Printer::new(
        args.run.json,
        show,
        ndjson::Options {
            syscall_top: args.top,
        },
    )
    .recording(args.run.record.as_deref())?;
    runner::run(&process, opts, limits, printer)
}
