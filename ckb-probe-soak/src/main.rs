//! `ckb-probe-soak-report --dir DIR`: the soak report of the run in DIR.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Writes DIR/REPORT.md, DIR/charts/*.svg and DIR/summary.json for a run made by scripts/soak.sh.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The run directory (scripts/soak.sh --out DIR).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = match ckb_probe_soak::Run::load(&args.dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ckb-probe-soak-report: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match ckb_probe_soak::generate(&run) {
        Ok(s) => {
            let failed: Vec<&str> = s
                .checks
                .iter()
                .filter(|c| c.verdict == ckb_probe_soak::report::Verdict::Fail)
                .map(|c| c.id.as_str())
                .collect();
            println!(
                "{}: {} checks, failed: {}",
                args.dir.join("REPORT.md").display(),
                s.checks.len(),
                if failed.is_empty() {
                    "none".to_string()
                } else {
                    failed.join(", ")
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ckb-probe-soak-report: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
