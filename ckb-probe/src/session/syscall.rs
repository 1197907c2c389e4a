//! The syscall layer of a run: its collector and the target's thread census.

use std::{collections::BTreeMap, time::Instant};

use anyhow::{Context, Result};
use ckb_probe_common::syscall::Role;

use crate::{
    analysis::{
        syscall::{SysInterval, interval},
        syscall_names::SyscallTable,
    },
    collect::syscall::{SysCollector, SysSnapshot, thread_roles},
    model::{self, SysSection},
    probe::{Engine, syscall::attach},
    target::Process,
};

pub struct SysLayer {
    pid: u32,
    table: Option<SyscallTable>,
    collector: SysCollector,
    first: SysSnapshot,
    prev: SysSnapshot,
    /// The last thread census, kept for the summary after the target has exited.
    threads: BTreeMap<Role, usize>,
}

impl SysLayer {
    /// Attaches the syscall tracepoints through `engine` for `process`.
    pub fn open(engine: &mut Engine, process: &Process, notes: &mut Vec<String>) -> Result<Self> {
        let mut collector = SysCollector::new(engine)?;
        let attached = attach(engine).context("attaching the syscall tracepoints")?;
        let first = collector.snapshot()?;
        notes.push(format!(
            "attached to PID {} ({}): raw tracepoints sys_enter/sys_exit, syscall names for {}{}",
            process.pid,
            process.command(),
            attached.arch.unwrap_or("no architecture (numbers only)"),
            if attached.futex_waits {
                ""
            } else {
                "; futex waits cannot be told from wakes here"
            }
        ));
        Ok(SysLayer {
            pid: process.pid,
            table: SyscallTable::host(),
            collector,
            prev: first.clone(),
            first,
            threads: BTreeMap::new(),
        })
    }

    pub fn start(&self) -> Instant {
        self.first.at
    }

    fn between(&mut self, from: &SysSnapshot, to: &SysSnapshot) -> SysInterval {
        let now = thread_roles(self.pid);
        if !now.is_empty() {
            self.threads = now;
        }
        interval(from, to, self.table.as_ref(), &self.threads)
    }

    /// Latency distribution of every system call since attach, by name.
    fn histograms(&self, cur: &SysSnapshot) -> BTreeMap<String, Vec<model::Bucket>> {
        cur.hist
            .iter()
            .filter_map(|(nr, h)| {
                let name = SyscallTable::name(self.table.as_ref(), *nr).into_owned();
                let b = model::sparse(&h[..]);
                (!b.is_empty()).then_some((name, b))
            })
            .collect()
    }

    pub fn tick(&mut self) -> Result<SysSection> {
        let cur = self.collector.snapshot()?;
        let prev = std::mem::replace(&mut self.prev, SysSnapshot::empty(cur.at));
        let stats = self.between(&prev, &cur);
        let histograms = self.histograms(&cur);
        self.prev = cur;
        Ok(SysSection {
            stats,
            histograms,
            arch: None,
        })
    }

    pub fn summary(&mut self) -> Result<SysSection> {
        let cur = self.collector.snapshot()?;
        let first = std::mem::replace(&mut self.first, SysSnapshot::empty(cur.at));
        let stats = self.between(&first, &cur);
        self.first = first;
        Ok(SysSection {
            histograms: self.histograms(&cur),
            stats,
            arch: self.table.map(|t| t.arch.to_string()),
        })
    }
}
