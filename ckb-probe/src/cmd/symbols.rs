//! `ckb-probe symbols`: the tiered symbol report of a binary or of a running process.

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
};

use ckb_probe::symbols::{self, BinaryReport, ProbeCost, Tier1Fn, tiers::CRATES};

/// Tier 2 names shown without `--all`.
const TIER2_SHOWN: usize = 20;

#[derive(clap::Args)]
pub struct Args {
    /// The executable (or shared library) to analyse, e.g. `$(which ckb)`.
    #[arg(
        value_name = "BINARY",
        required_unless_present = "pid",
        conflicts_with = "pid"
    )]
    pub binary: Option<PathBuf>,
    /// Analyse the executable of a running process, and the RocksDB library it maps.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// List every function: all rocksdb_* functions, all of tier 2, and tier 3.
    #[arg(long)]
    pub all: bool,
    /// For a stripped binary: read the functions from this unstripped build of it (same
    /// build-id; another build is refused).
    #[arg(long, value_name = "FILE")]
    pub symbols_from: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let from = args.symbols_from.as_deref();
    let mut report = match (&args.binary, args.pid, from) {
        (_, Some(pid), Some(from)) => symbols::analyze_process_symbols_from(pid, from)?,
        (_, Some(pid), None) => symbols::analyze_process(pid)?,
        (Some(path), None, Some(from)) => symbols::analyze_symbols_from(path, from)?,
        (Some(path), None, None) => symbols::analyze(path)?,
        // clap enforces one of the two; keep a clear message if that ever changes.
        (None, None, _) => anyhow::bail!(ckb_probe::error::InputError::Other(
            "give a BINARY path or --pid PID".into()
        )),
    };
    if !args.all {
        report.tier3 = None;
    }
    let written = if args.json {
        print_json(&report)
    } else {
        print_human(&report, args.all)
    };
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn print_json(r: &BinaryReport) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, r)?;
    writeln!(out)
}

fn human_size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB ({n} bytes)", n as f64 / f64::from(1u32 << 20))
    } else {
        format!("{n} bytes")
    }
}

/// Where an entry-only probe of a function whose first instruction is single-stepped goes, or
/// why it stays there (nothing is said of the others: their entry is cheap already).
fn entry_line(t: &Tier1Fn) -> Option<String> {
    if t.probe_cost != Some(ProbeCost::SingleStep) {
        return None;
    }
    Some(match (t.entry_offset?, &t.entry_note) {
        (0, Some(why)) => format!("entry-only probe stays at +0: {why}"),
        (off, _) => format!(
            "entry-only probe at +{off:#x} `{}` ({}, %rsp {:#x} below entry)",
            t.entry_insn.as_deref().unwrap_or("-"),
            t.entry_cost.map(|c| c.as_str()).unwrap_or("-"),
            t.entry_sp_delta.unwrap_or(0),
        ),
    })
}

fn print_human(r: &BinaryReport, all: bool) -> io::Result<()> {
    let mut o = io::BufWriter::new(io::stdout().lock());
    match r.pid {
        Some(pid) => writeln!(o, "{} (PID {pid})", r.path.display())?,
        None => writeln!(o, "{}", r.path.display())?,
    }
    writeln!(o, "  size          {}", human_size(r.size_bytes))?;
    writeln!(
        o,
        "  build-id      {}",
        r.build_id.as_deref().unwrap_or("none")
    )?;
    writeln!(o, "  arch          {}", r.arch)?;
    writeln!(
        o,
        "  stripped      {}",
        if r.stripped {
            "yes (no .symtab)"
        } else {
            "no (.symtab present)"
        }
    )?;
    let linkage = match (r.rocksdb_linkage, &r.rocksdb_library) {
        ("dynamic", Some(lib)) => format!("dynamic ({})", lib.display()),
        ("static", _) => "static (rocksdb_* defined in this file)".to_string(),
        (l, _) => l.to_string(),
    };
    if let Some(from) = &r.symbols_from {
        writeln!(o, "  symbols from  {} (same build-id)", from.display())?;
    }
    writeln!(o, "  RocksDB       {linkage}")?;
    writeln!(
        o,
        "  CKB version   {}",
        r.ckb_version
            .as_deref()
            .unwrap_or("unknown (not a CKB release build?)")
    )?;

    let present = r.tier1.iter().filter(|t| t.present).count();
    let traced = r.tier1.iter().filter(|t| t.traced).count();
    let traced_present = r.tier1.iter().filter(|t| t.traced && t.present).count();
    writeln!(o)?;
    writeln!(
        o,
        "Tier 1: RocksDB C API ({present} rocksdb_* functions found; {traced_present} of the {traced} traced ones present)"
    )?;
    writeln!(
        o,
        "  {:<42} {:<7} {:>10}  {:<11}  {:<18}  op",
        "function", "present", "offset", "probe cost", "first insn"
    )?;
    let mut others = 0;
    for t in &r.tier1 {
        if !t.traced && !all {
            others += 1;
            continue;
        }
        let op = match (t.op, t.traced) {
            (Some(op), _) => op,
            (None, true) => "(forget)",
            (None, false) => "",
        };
        writeln!(
            o,
            "  {:<42} {:<7} {:>10}  {:<11}  {:<18}  {op}",
            t.name,
            if t.present { "yes" } else { "NO" },
            t.file_offset
                .map(|v| format!("{v:#x}"))
                .unwrap_or_else(|| "-".into()),
            t.probe_cost.map(|c| c.as_str()).unwrap_or("-"),
            t.first_insn.as_deref().unwrap_or("-"),
        )?;
        if let Some(line) = entry_line(t) {
            writeln!(o, "  {:<42} {line}", "")?;
        }
    }
    if others > 0 {
        writeln!(
            o,
            "  ({others} other rocksdb_* functions present: list them with --all)"
        )?;
    }
    if !r.tier1_missing_traced.is_empty() {
        writeln!(o, "  missing traced: {}", r.tier1_missing_traced.join(", "))?;
    }

    let crates = CRATES.map(|c| c.trim_end_matches(':')).join(", ");
    writeln!(o)?;
    writeln!(
        o,
        "Tier 2: single-instance, non-closure functions of {crates}: {}",
        r.tier2_count
    )?;
    let shown = if all { r.tier2.len() } else { TIER2_SHOWN };
    for name in r.tier2.iter().take(shown) {
        writeln!(o, "  {name}")?;
    }
    if r.tier2.len() > shown {
        writeln!(o, "  ... {} more (--all)", r.tier2.len() - shown)?;
    }
    writeln!(
        o,
        "Tier 3: closures, generic instances and shims of those crates: {}{}",
        r.tier3_count,
        if all || r.tier3_count == 0 {
            ""
        } else {
            " (list them with --all)"
        }
    )?;
    if let Some(t3) = &r.tier3 {
        for name in t3 {
            writeln!(o, "  {name}")?;
        }
    }
    if let Some(h) = &r.hint {
        writeln!(o)?;
        writeln!(o, "hint: {h}")?;
    }
    o.flush()
}
