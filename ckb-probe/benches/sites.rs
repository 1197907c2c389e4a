//! What moving an entry-only probe off a single-stepped first instruction saves, per function,
//! on the synthetic `ckb-probe-sitebed` (its functions start with `sub $n,%rsp`). Prints
//! figures only:
//!   cargo bench -p ckb-probe --bench sites
//! For each function: ns per call with no probe, with ckb-probe's entry-only program on the
//! first instruction (offset 0), and at the entry site `symbols` chose; medians of `REPS` runs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;

use ckb_probe::{
    probe::{
        Engine,
        rocksdb::{self, RocksOptions},
    },
    symbols, target,
};
use ckb_probe_common::config::Config;
use support::{Testbed, testbed_bin};

const REPS: usize = 5;
const CALLS: &str = "200000";
const FUNCTIONS: [&str; 2] = ["rocksdb_writebatch_clear", "rocksdb_transaction_destroy"];

#[derive(Clone, Copy, PartialEq)]
enum Placement {
    None,
    FirstInsn,
    EntrySite,
}

/// ns per call of each function in one sitebed run.
fn run(placement: Placement) -> BTreeMap<String, f64> {
    let tb = Testbed::spawn_exe(
        &testbed_bin("ckb-probe-sitebed"),
        &["--calls", CALLS, "--batches", "10", "--linger", "0"],
    );
    let engine = (placement != Placement::None).then(|| {
        let p = target::process(tb.pid).expect("sitebed process");
        let mut sites = symbols::rocksdb_sites(&p).expect("sites");
        if placement == Placement::FirstInsn {
            for s in sites.sites.values_mut() {
                s.entry_offset = s.file_offset;
            }
        }
        let mut engine = Engine::load(Config {
            tgid: tb.pid,
            flags: 0,
            slow_threshold_ns: u64::MAX,
        })
        .expect("load (run as root)");
        rocksdb::attach(
            &mut engine,
            &sites,
            tb.pid,
            RocksOptions {
                iter_next: true,
                entry_only: false,
            },
        )
        .expect("attach");
        engine
    });
    tb.start();
    let truth = tb.finish();
    drop(engine);
    FUNCTIONS
        .iter()
        .map(|f| (f.to_string(), truth["ns_per_call"][f].as_f64().expect("ns")))
        .collect()
}

/// (median, smallest, largest).
fn median(v: Vec<f64>) -> (f64, f64, f64) {
    let (lo, hi) = support::bench::range(&v);
    (support::bench::median(&v), lo, hi)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let exe = testbed_bin("ckb-probe-sitebed");
    let report = symbols::analyze(&exe).expect("analyse sitebed");
    println!(
        "kernel {}; {REPS} runs of {CALLS} calls per function",
        ckb_probe::check::kernel_release()
    );
    let placements = [
        ("no probe", Placement::None),
        ("probe at +0", Placement::FirstInsn),
        ("probe at entry site", Placement::EntrySite),
    ];
    let mut runs: Vec<Vec<BTreeMap<String, f64>>> = vec![Vec::new(); placements.len()];
    // Interleaved, so that a noisy neighbour hurts every placement alike.
    for _ in 0..REPS {
        for (i, (_, p)) in placements.iter().enumerate() {
            runs[i].push(run(*p));
        }
    }
    for f in FUNCTIONS {
        let row = report.tier1.iter().find(|t| t.name == f).expect("row");
        println!(
            "\n{f}: first `{}` ({}); entry site +{:#x} `{}` ({})",
            row.first_insn.as_deref().unwrap_or("-"),
            row.probe_cost.map_or("-", |c| c.as_str()),
            row.entry_offset.unwrap_or(0),
            row.entry_insn.as_deref().unwrap_or("-"),
            row.entry_cost.map_or("-", |c| c.as_str()),
        );
        let base = median(runs[0].iter().map(|r| r[f]).collect()).0;
        for (i, (name, _)) in placements.iter().enumerate() {
            let (m, lo, hi) = median(runs[i].iter().map(|r| r[f]).collect());
            println!(
                "  {name:<20} {m:>9.1} ns/call (min {lo:.1}, max {hi:.1}); added {:>9.1} ns",
                m - base
            );
        }
    }
}
