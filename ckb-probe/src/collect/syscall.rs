//! Reads the syscall layer's maps: cumulative per-(syscall, role) aggregates summed over CPUs,
//! latency histograms per syscall and per (I/O syscall, role), and the loss counters.

use std::{collections::BTreeMap, time::Instant};

use ckb_probe_common::{
    hist::{BUCKETS, Histogram},
    syscall::{Role, SysKey, SysStats, counter, role_of_name},
};

use super::batch::PerCpuMap;
use crate::probe::{Engine, ProbeError};

/// Cumulative state of the layer at one instant. Values only grow, so two snapshots give exact
/// interval deltas.
#[derive(Clone)]
pub struct SysSnapshot {
    pub at: Instant,
    /// `(nr, role)` → aggregates since attach.
    pub rows: BTreeMap<SysKey, SysStats>,
    /// Per syscall number, latency histogram since attach (ns buckets).
    pub hist: BTreeMap<u32, Box<Histogram>>,
    /// Per (I/O syscall, role), latency histogram since attach.
    pub role_hist: BTreeMap<SysKey, Box<Histogram>>,
    pub counters: [u64; counter::LEN as usize],
}

impl SysSnapshot {
    pub fn empty(at: Instant) -> Self {
        SysSnapshot {
            at,
            rows: BTreeMap::new(),
            hist: BTreeMap::new(),
            role_hist: BTreeMap::new(),
            counters: [0; counter::LEN as usize],
        }
    }
}

pub struct SysCollector {
    stats: PerCpuMap<SysKey, SysStats>,
    hist: PerCpuMap<u32, Histogram>,
    role_hist: PerCpuMap<SysKey, Histogram>,
    counters: PerCpuMap<u32, u64>,
}

fn sum_hist<'a>(per_cpu: impl IntoIterator<Item = &'a Histogram>) -> Box<Histogram> {
    let mut h = Box::new([0u64; BUCKETS]);
    for cpu in per_cpu {
        for (acc, v) in h.iter_mut().zip(cpu.iter()) {
            *acc += v;
        }
    }
    h
}

impl SysCollector {
    /// Takes the layer's maps out of `engine` (before or after [`crate::probe::syscall::attach`]).
    pub fn new(engine: &mut Engine) -> Result<Self, ProbeError> {
        Ok(SysCollector {
            stats: PerCpuMap::new(engine, "SYS_STATS")?,
            hist: PerCpuMap::new(engine, "SYS_HIST")?,
            role_hist: PerCpuMap::new(engine, "SYS_ROLE_HIST")?,
            counters: PerCpuMap::new(engine, "SYS_COUNTERS")?,
        })
    }

    /// Reads every aggregate.
    pub fn snapshot(&mut self) -> Result<SysSnapshot, ProbeError> {
        let mut snap = SysSnapshot::empty(Instant::now());
        let rows = &mut snap.rows;
        self.stats.for_each(|key, per_cpu| {
            let row = rows.entry(key).or_default();
            for v in per_cpu {
                row.merge(v);
            }
        })?;
        let hist = &mut snap.hist;
        self.hist.for_each(|nr, per_cpu| {
            hist.insert(nr, sum_hist(per_cpu));
        })?;
        let role_hist = &mut snap.role_hist;
        self.role_hist.for_each(|key, per_cpu| {
            role_hist.insert(key, sum_hist(per_cpu));
        })?;
        let counters = &mut snap.counters;
        self.counters.for_each(|i, per_cpu| {
            if let Some(c) = counters.get_mut(i as usize) {
                *c = per_cpu.iter().sum();
            }
        })?;
        Ok(snap)
    }
}

/// How many live threads of `pid` each role has now (from `/proc/PID/task/*/comm`, classified
/// by the same rules as the kernel's); empty when the process is gone.
pub fn thread_roles(pid: u32) -> BTreeMap<Role, usize> {
    let mut out = BTreeMap::new();
    for (_, comm) in crate::target::threads(pid) {
        *out.entry(role_of_name(comm.as_bytes())).or_default() += 1;
    }
    out
}
