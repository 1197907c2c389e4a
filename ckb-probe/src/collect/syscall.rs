//! Reads the syscall layer's maps: cumulative per-(syscall, role) aggregates summed over CPUs,
//! latency histograms per syscall and per (I/O syscall, role), and the loss counters.

use std::{collections::BTreeMap, time::Instant};

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use ckb_probe_common::{
    hist::{BUCKETS, Histogram},
    syscall::{Role, SysKey, SysStats, counter, role_of_name},
};

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
    stats: PerCpuHashMap<MapData, SysKey, SysStats>,
    hist: PerCpuHashMap<MapData, u32, Histogram>,
    role_hist: PerCpuHashMap<MapData, SysKey, Histogram>,
    counters: PerCpuArray<MapData, u64>,
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
            stats: engine.map("SYS_STATS")?,
            hist: engine.map("SYS_HIST")?,
            role_hist: engine.map("SYS_ROLE_HIST")?,
            counters: engine.map("SYS_COUNTERS")?,
        })
    }

    /// Reads every aggregate.
    pub fn snapshot(&self) -> Result<SysSnapshot, ProbeError> {
        let mut snap = SysSnapshot::empty(Instant::now());
        for item in self.stats.iter() {
            let (key, per_cpu) = item.map_err(ProbeError::map("SYS_STATS"))?;
            let row = snap.rows.entry(key).or_default();
            for v in per_cpu.iter() {
                row.merge(v);
            }
        }
        for item in self.hist.iter() {
            let (nr, per_cpu) = item.map_err(ProbeError::map("SYS_HIST"))?;
            snap.hist.insert(nr, sum_hist(per_cpu.iter()));
        }
        for item in self.role_hist.iter() {
            let (key, per_cpu) = item.map_err(ProbeError::map("SYS_ROLE_HIST"))?;
            snap.role_hist.insert(key, sum_hist(per_cpu.iter()));
        }
        for (i, c) in snap.counters.iter_mut().enumerate() {
            let per_cpu = self
                .counters
                .get(&(i as u32), 0)
                .map_err(ProbeError::map("SYS_COUNTERS"))?;
            *c = per_cpu.iter().sum();
        }
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
