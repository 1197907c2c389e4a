//! Reads the network layer's maps: per-peer aggregates, global counters summed over CPUs, the
//! listening ports the kernel consults, and connection events from the ring buffer.

use super::clock::monotonic_ns;
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use aya::maps::{HashMap, MapData, RingBuf};
use ckb_probe_common::net::{NetEvent, PeerKey, PeerStats, counter};

use super::batch::PerCpuMap;
use crate::probe::{Engine, ProbeError};

/// Cumulative state of the layer at one instant.
#[derive(Clone, Debug)]
pub struct NetSnapshot {
    pub at: Instant,
    /// `CLOCK_MONOTONIC` now, ns: the kernel's clock, to age connections.
    pub mono_ns: u64,
    /// Every peer the kernel currently holds (LRU: the least recently active go first).
    pub peers: BTreeMap<PeerKey, PeerStats>,
    /// `counter::*` totals since attach.
    pub counters: [u64; counter::LEN as usize],
}

impl NetSnapshot {
    pub fn empty(at: Instant) -> Self {
        NetSnapshot {
            at,
            mono_ns: monotonic_ns(),
            peers: BTreeMap::new(),
            counters: [0; counter::LEN as usize],
        }
    }

    pub fn counter(&self, i: u32) -> u64 {
        self.counters.get(i as usize).copied().unwrap_or(0)
    }
}

pub struct NetCollector {
    peers: HashMap<MapData, PeerKey, PeerStats>,
    listen: HashMap<MapData, u16, u32>,
    counters: PerCpuMap<u32, u64>,
    events: RingBuf<MapData>,
}

impl NetCollector {
    pub fn new(engine: &mut Engine) -> Result<Self, ProbeError> {
        Ok(NetCollector {
            peers: engine.map("NET_PEERS")?,
            listen: engine.map("NET_LISTEN")?,
            counters: PerCpuMap::new(engine, "NET_COUNTERS")?,
            events: engine.map("NET_EVENTS")?,
        })
    }

    /// Reads every peer and counter. A peer's counters only grow while its entry lives; an
    /// entry evicted and re-created shows a new `first_ns`.
    pub fn snapshot(&mut self) -> Result<NetSnapshot, ProbeError> {
        let mut snap = NetSnapshot::empty(Instant::now());
        // Entries may be evicted while iterating: a vanished key ends its walk early, so the
        // error of one item is skipped rather than failing the whole snapshot.
        for (key, stats) in self.peers.iter().flatten() {
            snap.peers.insert(key, stats);
        }
        let counters = &mut snap.counters;
        self.counters.for_each(|i, per_cpu| {
            if let Some(c) = counters.get_mut(i as usize) {
                *c = per_cpu.iter().sum();
            }
        })?;
        snap.mono_ns = monotonic_ns();
        Ok(snap)
    }

    /// Listening ports the kernel programs know (given by user space or learnt from `listen`).
    pub fn listen_ports(&self) -> BTreeSet<u16> {
        self.listen.keys().flatten().collect()
    }

    /// Adds listening ports of the target; ports already known are left alone.
    pub fn add_listen_ports(&mut self, ports: &BTreeSet<u16>) -> Result<(), ProbeError> {
        let known = self.listen_ports();
        for &p in ports.difference(&known) {
            self.listen
                .insert(p, 1, 0)
                .map_err(ProbeError::map("NET_LISTEN"))?;
        }
        Ok(())
    }

    /// Hands every pending connection event to `f`.
    pub fn drain_events(&mut self, mut f: impl FnMut(NetEvent)) {
        while let Some(item) = self.events.next() {
            if item.len() < size_of::<NetEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a `NetEvent` (checked length; unaligned read).
            let ev: NetEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            f(ev);
        }
    }
}
