//! The stability (soak) report of ckb-probe: reads a directory written by `scripts/soak.sh`
//! and writes `REPORT.md`, SVG charts and `summary.json` into it. Every number comes from the
//! run's own files: ckb-probe's NDJSON (the typed reports the live views show), /proc samples,
//! the kernel log and the testbed's ground truth.

pub mod analyze;
pub mod chart;
pub mod data;
pub mod report;

pub use data::Run;
pub use report::{Summary, generate};
