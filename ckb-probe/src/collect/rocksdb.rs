//! Reads the RocksDB layer's maps: cumulative per-(function, column-family slot) aggregates
//! summed over CPUs, per-function histograms, column-family names, loss counters, slow events.

use std::{collections::BTreeMap, time::Instant};

use aya::maps::{HashMap, MapData, RingBuf};
use ckb_probe_common::{
    hist::{BUCKETS, Histogram},
    rocksdb::{
        CF_DEFAULT, CF_SLOTS, CF_UNKNOWN, CfInfo, EVENT_SLOW_OP, FN_COUNT, OpStats, SlowEvent,
        TRACED, cf_slot, counter,
    },
};

use super::batch::PerCpuMap;
use crate::probe::{Engine, ProbeError, SLOW_EVENTS_MAP};

/// Cumulative state of the layer at one instant.
#[derive(Clone)]
pub struct RocksSnapshot {
    pub at: Instant,
    /// `(fn_id, column-family slot)` → aggregates since attach (rows never used are left out).
    pub rows: BTreeMap<(u32, u64), OpStats>,
    /// Per function id, latency histogram since attach.
    pub hist: Vec<Box<Histogram>>,
    pub counters: [u64; counter::LEN as usize],
}

impl RocksSnapshot {
    pub fn empty(at: Instant) -> Self {
        RocksSnapshot {
            at,
            rows: BTreeMap::new(),
            hist: (0..FN_COUNT).map(|_| Box::new([0u64; BUCKETS])).collect(),
            counters: [0; counter::LEN as usize],
        }
    }
}

/// A column family as resolved in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CfName {
    pub id: u32,
    pub name: String,
}

pub struct RocksCollector {
    stats: PerCpuMap<u32, OpStats>,
    hist: PerCpuMap<u32, Histogram>,
    cf: HashMap<MapData, u64, CfInfo>,
    counters: PerCpuMap<u32, u64>,
    events: RingBuf<MapData>,
}

impl RocksCollector {
    pub fn new(engine: &mut Engine) -> Result<Self, ProbeError> {
        Ok(RocksCollector {
            stats: PerCpuMap::new(engine, "ROCKS_STATS")?,
            hist: PerCpuMap::new(engine, "ROCKS_HIST")?,
            cf: engine.map("ROCKS_CF")?,
            counters: PerCpuMap::new(engine, "ROCKS_COUNTERS")?,
            events: engine.map(SLOW_EVENTS_MAP)?,
        })
    }

    /// Reads every aggregate. Values only grow, so two snapshots give exact interval deltas.
    pub fn snapshot(&mut self) -> Result<RocksSnapshot, ProbeError> {
        let mut snap = RocksSnapshot::empty(Instant::now());
        let rows = &mut snap.rows;
        self.stats.for_each(|index, per_cpu| {
            // The inverse of `stats_index`.
            let (fid, slot) = (index / CF_SLOTS, u64::from(index % CF_SLOTS));
            let Some(f) = TRACED.get(fid as usize) else {
                return;
            };
            // A function without a column-family argument only ever uses CF_DEFAULT's row.
            let used = if f.cf_arg.is_some() {
                slot >= CF_UNKNOWN
            } else {
                slot == CF_DEFAULT
            };
            let mut row = OpStats::default();
            for v in per_cpu {
                row.merge(v);
            }
            if used && row.count > 0 {
                rows.insert((fid, slot), row);
            }
        })?;
        let hist = &mut snap.hist;
        self.hist.for_each(|id, per_cpu| {
            if let Some(h) = hist.get_mut(id as usize) {
                for cpu in per_cpu {
                    for (acc, v) in h.iter_mut().zip(cpu.iter()) {
                        *acc += v;
                    }
                }
            }
        })?;
        let counters = &mut snap.counters;
        self.counters.for_each(|i, per_cpu| {
            if let Some(c) = counters.get_mut(i as usize) {
                *c = per_cpu.iter().sum();
            }
        })?;
        Ok(snap)
    }

    /// Column-family slots the kernel resolved, with their RocksDB id and name (from the
    /// handles seen). Names that are not printable are treated as a layout mismatch and left
    /// out. Families of two databases sharing an id share a slot, named by both names.
    pub fn cf_names(&self) -> BTreeMap<u64, CfName> {
        let mut out: BTreeMap<u64, CfName> = BTreeMap::new();
        for (_handle, info) in self.cf.iter().flatten() {
            if cf_slot(info.id) == CF_UNKNOWN {
                continue;
            }
            let n = (info.name_len as usize).min(info.name.len());
            match std::str::from_utf8(&info.name[..n]) {
                Ok(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() || c == ' ') => {
                    let e = out.entry(cf_slot(info.id)).or_insert_with(|| CfName {
                        id: info.id,
                        name: s.to_string(),
                    });
                    if !e.name.split('|').any(|n| n == s) {
                        e.name = format!("{}|{s}", e.name);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Hands every pending slow event to `f`.
    pub fn drain_events(&mut self, mut f: impl FnMut(SlowEvent)) {
        while let Some(item) = self.events.next() {
            if item.len() < size_of::<SlowEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a `SlowEvent` (checked length; unaligned read).
            let ev: SlowEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            if ev.kind == EVENT_SLOW_OP {
                f(ev);
            }
        }
    }
}
