//! The syscall layer's part of a report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Bucket;
use crate::analysis::syscall::SysInterval;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SysSection {
    /// Per system call and thread role over the report's span, derived metrics, threads.
    pub stats: SysInterval,
    /// Latency distribution per system call since the probes were attached.
    pub histograms: BTreeMap<String, Vec<Bucket>>,
    /// The architecture whose syscall names are used (null: numbers only).
    pub arch: Option<String>,
}

impl SysSection {
    /// Restores what NDJSON does not carry (internal sums in ns, the call's kind bits) after a
    /// report was read back, so views work the same on a recorded run as on a live one.
    pub fn restore_internal(&mut self) {
        use ckb_probe_common::syscall::kind_of_name;
        let fix = |r: &mut crate::analysis::syscall::SysReport| {
            r.total_ns = (r.total_us * 1_000.0).round() as u64;
            r.kind = kind_of_name(&r.name);
        };
        for r in &mut self.stats.syscalls {
            fix(r);
        }
        for role in self.stats.roles.values_mut() {
            for r in role.values_mut() {
                fix(r);
            }
        }
        self.stats.total_ns = self.stats.syscalls.iter().map(|r| r.total_ns).sum();
    }
}
