//! `ckb-probe check`: can this machine (and a target process) be traced?

use std::{
    io::{self, Write as _},
    process::ExitCode,
};

use ckb_probe::check::{self, Report, Status};

#[derive(clap::Args)]
pub struct Args {
    /// Also check a target process: its RocksDB functions, probe costs and seccomp filter.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Print one JSON object `{"kernel_release", "checks": [...], "ready"}`.
    #[arg(long)]
    pub json: bool,
}

/// Exit code 0 when ready, 1 when a check failed, 2 when the PID is not usable.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = check::run(args.pid)?;
    let written = if args.json {
        print_json(&report)
    } else {
        print_human(&report)
    };
    // A closed pipe (`| head`) is not an error of ours.
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(ExitCode::from(if report.ready { 0 } else { 1 }))
}

fn print_json(r: &Report) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, r)?;
    writeln!(out)
}

fn print_human(r: &Report) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "ckb-probe check (kernel {})", r.kernel_release)?;
    let width = r.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &r.checks {
        writeln!(out, "[{}] {:width$}  {}", c.status.mark(), c.name, c.detail)?;
        if matches!(c.status, Status::Warn | Status::Fail)
            && let Some(h) = &c.hint
        {
            writeln!(out, "       {:width$}  hint: {h}", "")?;
        }
    }
    let fails = r.checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = r.checks.iter().filter(|c| c.status == Status::Warn).count();
    if r.ready {
        writeln!(out, "ready: yes ({warns} warning(s))")
    } else {
        writeln!(
            out,
            "ready: NO ({fails} failed check(s), {warns} warning(s)): see the hints above"
        )
    }
}
