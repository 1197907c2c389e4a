//! `ckb-probe replay FILE`: shows a recording (`--record FILE`, or any `--json` output) again,
//! with the same tables as the live run, or normalized NDJSON. Reports are read back into the
//! run model, so every view works on a recording as on a live run.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context, Result};
use ckb_probe::{
    error::InputError,
    view::{ndjson, text},
};
use ckb_probe_common::syscall::Role;

use super::runner::Printer;

#[derive(clap::Args)]
pub struct Args {
    /// An NDJSON recording ("-" for standard input).
    pub file: PathBuf,
    /// Print normalized NDJSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// RocksDB: latency distributions instead of the rate table.
    #[arg(long)]
    pub histogram: bool,
    /// RocksDB: the slow-operation log instead of the rate table.
    #[arg(long)]
    pub slow: bool,
    /// RocksDB: add the per-column-family table.
    #[arg(long)]
    pub by_cf: bool,
    /// Syscall: rows in the tables.
    #[arg(long, default_value_t = 15)]
    pub top: usize,
    /// Syscall: break every role's calls down.
    #[arg(long)]
    pub by_role: bool,
    /// Syscall: only one thread role's calls.
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// Network: peers shown.
    #[arg(long, default_value_t = 30)]
    pub rows: usize,
    /// Network: connection events shown.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let role = match &args.role {
        None => None,
        Some(name) => Some(Role::from_name(name).ok_or_else(|| {
            InputError::Other(format!(
                "--role {name}: unknown role; use one of {}",
                Role::ALL.map(Role::name).join(", ")
            ))
        })?),
    };
    if args.top == 0 {
        return Err(InputError::Other("--top must be at least 1".into()).into());
    }
    let reader: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(&args.file).map_err(
            |e| InputError::Path {
                path: args.file.clone(),
                problem: format!("cannot be read ({e})"),
                hint: "give the path of a file written by --record or --json",
            },
        )?))
    };
    let show = text::Options {
        rocksdb: text::RocksShow {
            histogram: args.histogram,
            slow: args.slow,
            by_cf: args.by_cf,
        },
        syscall: text::SysShow {
            top: args.top,
            by_role: args.by_role,
            role,
        },
        net: text::NetShow {
            rows: args.rows,
            events: args.events,
        },
    };
    let mut printer = Printer::new(args.json, show, ndjson::Options::default()).scrolling();
    let mut n = 0;
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = ndjson::parse_any(&line).map_err(|e| {
            InputError::Other(format!(
                "{} line {}: {e}; replay reads the NDJSON of --record or --json",
                args.file.display(),
                i + 1
            ))
        })?;
        match parsed {
            ndjson::Parsed::Report(r) => printer.print(&r)?,
            ndjson::Parsed::Lifecycle(e) => printer.lifecycle(&e)?,
        }
        n += 1;
    }
    if n == 0 {
        return Err(InputError::Other(format!(
            "{}: no reports in it; replay reads the NDJSON of --record or --json",
            args.file.display()
        ))
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
