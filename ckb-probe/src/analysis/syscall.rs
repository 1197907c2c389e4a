//! Interval statistics of the syscall layer, from two cumulative snapshots: per system call,
//! per thread role, and the derived metrics.

use std::collections::BTreeMap;

use crate::model::de::Name;
use ckb_probe_common::{
    hist::BUCKETS,
    syscall::{Role, SysKey, SysStats, counter, kind, kind_of_name},
};
use serde::{Deserialize, Serialize};

use super::{hist, syscall_names::SyscallTable};
use crate::collect::syscall::SysSnapshot;

/// One system call over an interval: overall, or as made by one thread role.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SysReport {
    pub name: String,
    pub nr: u32,
    pub count: u64,
    pub calls_per_sec: f64,
    /// Calls that returned an errno (including EAGAIN, ETIMEDOUT, EINTR).
    pub errors: u64,
    pub total_us: f64,
    /// Null for `exit`/`exit_group`, counted at entry (they never return).
    pub avg_us: Option<f64>,
    /// Percentiles from the kernel's histogram (within 6.5 %); null for per-role entries of
    /// calls without a per-role histogram (only I/O calls have one).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Bytes moved (sum of positive returns); read/write family only.
    pub bytes: Option<u64>,
    /// Ready events returned; epoll waits only.
    pub events: Option<u64>,
    /// Calls that waited (FUTEX_WAIT-like operations); futex family only.
    pub waits: Option<u64>,
    /// Fraction of the parent's time: of all the target's syscall time for the top-level
    /// list; of this syscall's time across roles for a per-role entry.
    pub time_share: f64,
    #[serde(skip)]
    pub total_ns: u64,
    /// Time of the calls that waited.
    #[serde(skip)]
    pub wait_ns: u64,
    #[serde(skip)]
    pub kind: u32,
}

/// Metrics derived from several system calls.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Derived {
    /// Futex wait ratio: the share of futex-family calls (`futex`, `futex_waitv`, `futex_wait`)
    /// that wait, i.e. `futex` with FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_LOCK_PI(2) or
    /// FUTEX_WAIT_REQUEUE_PI, and every `futex_waitv`/`futex_wait`. The rest are wakes and
    /// requeues. Null without futex calls (or where waits cannot be told, see `futex_waits`).
    pub futex_wait_ratio: Option<f64>,
    pub futex_calls: u64,
    pub futex_waits: u64,
    /// Share of thread time spent in futex waits: the time of the waits that ended in the
    /// interval divided by (interval × live threads at its end). A wait is counted whole in
    /// the interval it ends in, so one interval can exceed 1 after long waits end; over a
    /// whole run it is the fraction of the threads' lifetime spent blocked on futexes.
    pub futex_wait_time_share: Option<f64>,
    /// I/O efficiency: bytes per call of the read family (`read`, `pread64`, `readv`,
    /// `preadv`, `preadv2`, `recvfrom`, `recvmsg`), failed calls included.
    pub read_bytes_per_call: Option<f64>,
    /// The same for the write family (`write`, `pwrite64`, `writev`, `pwritev`, `pwritev2`,
    /// `sendto`, `sendmsg`).
    pub write_bytes_per_call: Option<f64>,
    /// Epoll wake frequency: returns of `epoll_wait`/`epoll_pwait`/`epoll_pwait2` per second
    /// (events or timeouts).
    pub epoll_wakes_per_sec: f64,
    /// Ready events per epoll return.
    pub epoll_events_per_wake: Option<f64>,
    /// Durability barriers: `fdatasync` and `fsync` together.
    pub fdatasync_calls: u64,
    pub fdatasync_avg_us: Option<f64>,
    pub fdatasync_p99_us: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SysInterval {
    pub secs: f64,
    /// Every system call made in the interval, most total time first.
    pub syscalls: Vec<SysReport>,
    /// Role name → syscall name → that role's calls.
    #[serde(deserialize_with = "crate::model::de::name_map")]
    pub roles: BTreeMap<Name, BTreeMap<String, SysReport>>,
    pub derived: Derived,
    /// Role name → live threads of the target at the end of the interval.
    #[serde(deserialize_with = "crate::model::de::name_map")]
    pub threads: BTreeMap<Name, usize>,
    /// Exits with no matching entry (calls in flight at attach, or evicted slots).
    pub unpaired: u64,
    /// Threads (or processes) the target started: their first return from `clone*`/`fork`,
    /// which has no entry but is not lost data.
    pub threads_started: u64,
    /// Histogram updates lost (a histogram map full): percentiles miss those calls.
    pub hist_full: u64,
    /// Calls not counted at all (statistics map full).
    pub stats_full: u64,
    /// All syscall time of the target in the interval.
    #[serde(skip)]
    pub total_ns: u64,
}

impl SysInterval {
    pub fn syscall(&self, name: &str) -> Option<&SysReport> {
        self.syscalls.iter().find(|r| r.name == name)
    }

    /// A role's calls, most total time first.
    pub fn role_rows(&self, role: Role) -> Vec<&SysReport> {
        let mut rows: Vec<&SysReport> = self
            .roles
            .get(role.name())
            .map(|m| m.values().collect())
            .unwrap_or_default();
        rows.sort_by(|a, b| by_time(a, b));
        rows
    }

    /// Roles ordered by their total syscall time, most first.
    pub fn roles_by_time(&self) -> Vec<(Role, u64)> {
        let mut out: Vec<(Role, u64)> = self
            .roles
            .iter()
            .filter_map(|(name, m)| {
                Some((Role::from_name(name)?, m.values().map(|r| r.total_ns).sum()))
            })
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// For one syscall, the entries of every role that made it, most time first.
    pub fn by_role_of(&self, name: &str) -> Vec<(Role, &SysReport)> {
        let mut out: Vec<(Role, &SysReport)> = self
            .roles
            .iter()
            .filter_map(|(role, m)| Some((Role::from_name(role)?, m.get(name)?)))
            .collect();
        out.sort_by(|a, b| by_time(a.1, b.1));
        out
    }
}

fn by_time(a: &SysReport, b: &SysReport) -> std::cmp::Ordering {
    b.total_ns
        .cmp(&a.total_ns)
        .then(b.count.cmp(&a.count))
        .then(a.name.cmp(&b.name))
}

fn stats_delta(cur: &SysStats, prev: Option<&SysStats>) -> SysStats {
    let z = SysStats::default();
    let p = prev.unwrap_or(&z);
    SysStats {
        count: cur.count.saturating_sub(p.count),
        errors: cur.errors.saturating_sub(p.errors),
        total_ns: cur.total_ns.saturating_sub(p.total_ns),
        max_ns: 0,
        ret_sum: cur.ret_sum.saturating_sub(p.ret_sum),
        waits: cur.waits.saturating_sub(p.waits),
        wait_ns: cur.wait_ns.saturating_sub(p.wait_ns),
    }
}

/// A cumulative maximum that grew during the interval was reached in it: exact.
fn exact_max((before, after): (u64, u64)) -> Option<u64> {
    (after > before).then_some(after)
}

fn hist_delta<K: Ord>(
    cur: &BTreeMap<K, Box<[u64; BUCKETS]>>,
    prev: &BTreeMap<K, Box<[u64; BUCKETS]>>,
    key: &K,
) -> Option<Vec<u64>> {
    let c = cur.get(key)?;
    Some(match prev.get(key) {
        Some(p) => hist::delta(&c[..], &p[..]),
        None => c.to_vec(),
    })
}

struct Row<'a> {
    name: &'a str,
    nr: u32,
    kind: u32,
    s: &'a SysStats,
    h: Option<&'a [u64]>,
    max: (u64, u64),
    parent_ns: u64,
}

fn report(r: Row, secs: f64) -> SysReport {
    let us = |ns: f64| ns / 1_000.0;
    // `exit`/`exit_group` are counted at entry: they have no latency.
    let timed = r.kind & kind::NO_RETURN == 0 && r.s.count > 0;
    let max_ns = exact_max(r.max);
    let q = |p: f64| r.h.and_then(|h| hist::quantile(h, p, max_ns)).map(us);
    let s = r.s;
    SysReport {
        name: r.name.to_string(),
        nr: r.nr,
        count: s.count,
        calls_per_sec: if secs > 0.0 {
            s.count as f64 / secs
        } else {
            0.0
        },
        errors: s.errors,
        total_us: us(s.total_ns as f64),
        avg_us: timed.then(|| us(s.total_ns as f64 / s.count as f64)),
        p50_us: q(0.50),
        p99_us: q(0.99),
        max_us: if !timed {
            None
        } else {
            max_ns
                .or_else(|| r.h.and_then(hist::max_estimate))
                .map(|m| us(m as f64))
        },
        bytes: (r.kind & (kind::READ_BYTES | kind::WRITE_BYTES) != 0).then_some(s.ret_sum),
        events: (r.kind & kind::EPOLL_WAIT != 0).then_some(s.ret_sum),
        waits: (r.kind & (kind::FUTEX | kind::ALWAYS_WAITS) != 0).then_some(s.waits),
        time_share: if r.parent_ns > 0 {
            s.total_ns as f64 / r.parent_ns as f64
        } else {
            0.0
        },
        total_ns: s.total_ns,
        wait_ns: s.wait_ns,
        kind: r.kind,
    }
}

/// The interval between `prev` and `cur` (for a whole-run summary, `prev` is the snapshot taken
/// at attach time). `threads` is the target's live threads per role at the end.
pub fn interval(
    prev: &SysSnapshot,
    cur: &SysSnapshot,
    table: Option<&SyscallTable>,
    threads: &BTreeMap<Role, usize>,
) -> SysInterval {
    let secs = cur.at.duration_since(prev.at).as_secs_f64();
    let mut per_nr: BTreeMap<u32, (SysStats, (u64, u64))> = BTreeMap::new();
    let mut per_role: BTreeMap<SysKey, (SysStats, (u64, u64))> = BTreeMap::new();
    for (key, row) in &cur.rows {
        let p = prev.rows.get(key);
        let d = stats_delta(row, p);
        let before = p.map_or(0, |p| p.max_ns);
        let e = per_nr.entry(key.nr).or_default();
        e.0.merge(&d);
        e.1.0 = e.1.0.max(before);
        e.1.1 = e.1.1.max(row.max_ns);
        if d.count > 0 {
            per_role.insert(*key, (d, (before, row.max_ns)));
        }
    }
    let names: BTreeMap<u32, String> = per_nr
        .keys()
        .map(|&nr| (nr, SyscallTable::name(table, nr).into_owned()))
        .collect();
    let total_ns: u64 = per_nr.values().map(|(s, _)| s.total_ns).sum();

    let mut syscalls = Vec::new();
    let mut sync_hist = vec![0u64; BUCKETS];
    let mut sync_max = (0u64, 0u64);
    for (nr, (s, max)) in &per_nr {
        if s.count == 0 {
            continue;
        }
        let name = &names[nr];
        let k = kind_of_name(name);
        let h = hist_delta(&cur.hist, &prev.hist, nr);
        if k & kind::SYNC != 0 {
            if let Some(h) = &h {
                hist::add(&mut sync_hist, h);
            }
            sync_max = (sync_max.0.max(max.0), sync_max.1.max(max.1));
        }
        syscalls.push(report(
            Row {
                name,
                nr: *nr,
                kind: k,
                s,
                h: h.as_deref(),
                max: *max,
                parent_ns: total_ns,
            },
            secs,
        ));
    }
    syscalls.sort_by(by_time);

    let mut roles: BTreeMap<&'static str, BTreeMap<String, SysReport>> = BTreeMap::new();
    for (key, (s, max)) in &per_role {
        let role = Role::from_id(key.role).unwrap_or(Role::Other);
        let name = &names[&key.nr];
        let h = hist_delta(&cur.role_hist, &prev.role_hist, key);
        let r = report(
            Row {
                name,
                nr: key.nr,
                kind: kind_of_name(name),
                s,
                h: h.as_deref(),
                max: *max,
                parent_ns: per_nr[&key.nr].0.total_ns,
            },
            secs,
        );
        // Several role ids cannot map to one name, but an unknown id folds into "other".
        match roles.entry(role.name()).or_default().entry(name.clone()) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(r);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let merged = merge_reports(o.get(), &r, secs);
                o.insert(merged);
            }
        }
    }

    let nthreads: usize = threads.values().sum();
    let derived = derive(&syscalls, secs, nthreads, &sync_hist, exact_max(sync_max));
    let c = |i: u32| cur.counters[i as usize].saturating_sub(prev.counters[i as usize]);
    SysInterval {
        secs,
        syscalls,
        roles,
        derived,
        threads: threads.iter().map(|(r, n)| (r.name(), *n)).collect(),
        unpaired: c(counter::UNPAIRED),
        threads_started: c(counter::CHILD_STARTS),
        hist_full: c(counter::HIST_FULL),
        stats_full: c(counter::STATS_FULL),
        total_ns,
    }
}

/// Counts of two entries of one syscall folded together (percentiles dropped).
fn merge_reports(a: &SysReport, b: &SysReport, secs: f64) -> SysReport {
    let count = a.count + b.count;
    let total_ns = a.total_ns + b.total_ns;
    let sum = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0) + y.unwrap_or(0)),
    };
    SysReport {
        count,
        calls_per_sec: if secs > 0.0 { count as f64 / secs } else { 0.0 },
        errors: a.errors + b.errors,
        total_us: a.total_us + b.total_us,
        avg_us: (count > 0).then(|| total_ns as f64 / count as f64 / 1_000.0),
        p50_us: None,
        p99_us: None,
        max_us: match (a.max_us, b.max_us) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        },
        bytes: sum(a.bytes, b.bytes),
        events: sum(a.events, b.events),
        waits: sum(a.waits, b.waits),
        time_share: a.time_share + b.time_share,
        total_ns,
        wait_ns: a.wait_ns + b.wait_ns,
        ..a.clone()
    }
}

fn derive(
    syscalls: &[SysReport],
    secs: f64,
    nthreads: usize,
    sync_hist: &[u64],
    sync_max: Option<u64>,
) -> Derived {
    let of = |mask: u32| syscalls.iter().filter(move |r| r.kind & mask != 0);
    let ratio = |num: f64, den: f64| (den > 0.0).then(|| num / den);

    let futex_calls: u64 = of(kind::FUTEX | kind::ALWAYS_WAITS).map(|r| r.count).sum();
    let futex_waits: u64 = of(kind::FUTEX | kind::ALWAYS_WAITS)
        .filter_map(|r| r.waits)
        .sum();
    let futex_wait_ns: u64 = of(kind::FUTEX | kind::ALWAYS_WAITS)
        .map(|r| r.wait_ns)
        .sum();
    let (read_calls, read_bytes) =
        of(kind::READ_BYTES).fold((0, 0), |(c, b), r| (c + r.count, b + r.bytes.unwrap_or(0)));
    let (write_calls, write_bytes) =
        of(kind::WRITE_BYTES).fold((0, 0), |(c, b), r| (c + r.count, b + r.bytes.unwrap_or(0)));
    let (epoll_calls, epoll_events) =
        of(kind::EPOLL_WAIT).fold((0, 0), |(c, e), r| (c + r.count, e + r.events.unwrap_or(0)));
    let (sync_calls, sync_ns) =
        of(kind::SYNC).fold((0, 0), |(c, t), r| (c + r.count, t + r.total_ns));
    Derived {
        futex_wait_ratio: ratio(futex_waits as f64, futex_calls as f64),
        futex_calls,
        futex_waits,
        futex_wait_time_share: ratio(futex_wait_ns as f64, secs * 1e9 * nthreads as f64),
        read_bytes_per_call: ratio(read_bytes as f64, read_calls as f64),
        write_bytes_per_call: ratio(write_bytes as f64, write_calls as f64),
        epoll_wakes_per_sec: if secs > 0.0 {
            epoll_calls as f64 / secs
        } else {
            0.0
        },
        epoll_events_per_wake: ratio(epoll_events as f64, epoll_calls as f64),
        fdatasync_calls: sync_calls,
        fdatasync_avg_us: ratio(sync_ns as f64 / 1_000.0, sync_calls as f64),
        fdatasync_p99_us: hist::quantile(sync_hist, 0.99, sync_max).map(|ns| ns / 1_000.0),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use ckb_probe_common::hist::bucket_of;

    use super::*;

    const PWRITE64: u32 = 18;
    const FUTEX: u32 = 202;
    const FDATASYNC: u32 = 75;
    const EPOLL_WAIT: u32 = 232;
    const EXIT_GROUP: u32 = 231;

    fn key(nr: u32, role: Role) -> SysKey {
        SysKey {
            nr,
            role: role as u32,
        }
    }

    fn stats(count: u64, total_ns: u64, ret_sum: u64, waits: u64) -> SysStats {
        SysStats {
            count,
            errors: 0,
            total_ns,
            max_ns: total_ns.checked_div(count).unwrap_or(0),
            ret_sum,
            waits,
            wait_ns: waits * 1_000,
        }
    }

    fn hist_of(values: &[u64]) -> Box<[u64; BUCKETS]> {
        let mut h = Box::new([0u64; BUCKETS]);
        for &v in values {
            h[bucket_of(v)] += 1;
        }
        h
    }

    fn snapshots() -> (SysSnapshot, SysSnapshot) {
        let t0 = Instant::now();
        let mut prev = SysSnapshot::empty(t0);
        prev.rows.insert(
            key(PWRITE64, Role::Compaction),
            stats(10, 10 * 50_000, 10 * 4096, 0),
        );
        prev.counters[counter::UNPAIRED as usize] = 3;
        let mut cur = SysSnapshot::empty(t0 + Duration::from_secs(2));
        // 30 more compaction writes of 64 KiB, 20 on the commit path of 100 bytes.
        cur.rows.insert(
            key(PWRITE64, Role::Compaction),
            SysStats {
                max_ns: 100_000,
                ..stats(40, 10 * 50_000 + 30 * 100_000, 10 * 4096 + 30 * 65_536, 0)
            },
        );
        cur.rows.insert(
            key(PWRITE64, Role::VerifyBlocks),
            stats(20, 20 * 10_000, 20 * 100, 0),
        );
        cur.rows
            .insert(key(FUTEX, Role::Tokio), stats(100, 100 * 1_000, 0, 40));
        cur.rows.insert(
            key(FDATASYNC, Role::VerifyBlocks),
            stats(4, 4 * 2_000_000, 0, 0),
        );
        cur.rows
            .insert(key(EPOLL_WAIT, Role::Tokio), stats(50, 50 * 5_000, 75, 0));
        cur.rows
            .insert(key(EXIT_GROUP, Role::Main), stats(1, 0, 0, 0));
        cur.rows
            .insert(key(999, Role::Other), stats(2, 2_000, 0, 0));
        cur.hist.insert(
            FDATASYNC,
            hist_of(&[2_000_000, 2_000_000, 2_000_000, 2_000_000]),
        );
        cur.hist.insert(PWRITE64, hist_of(&[100_000; 30]));
        prev.hist.insert(PWRITE64, hist_of(&[]));
        cur.role_hist
            .insert(key(PWRITE64, Role::Compaction), hist_of(&[100_000; 30]));
        cur.counters[counter::UNPAIRED as usize] = 5;
        cur.counters[counter::CHILD_STARTS as usize] = 2;
        (prev, cur)
    }

    #[test]
    fn interval_deltas_roles_and_derived_metrics() {
        let (prev, cur) = snapshots();
        let threads = BTreeMap::from([(Role::Tokio, 4), (Role::Main, 1)]);
        let iv = interval(&prev, &cur, Some(&SyscallTable::X86_64), &threads);
        assert_eq!(iv.secs, 2.0);
        assert_eq!(iv.unpaired, 2);
        assert_eq!(iv.threads_started, 2);
        assert_eq!(iv.threads["tokio"], 4);

        let pw = iv.syscall("pwrite64").expect("pwrite64");
        assert_eq!(pw.count, 50);
        assert_eq!(pw.bytes, Some(30 * 65_536 + 20 * 100));
        assert_eq!(pw.calls_per_sec, 25.0);
        assert_eq!(iv.syscalls[0].name, "fdatasync", "most time first");
        // Split by role: compaction vs the commit path.
        let by_role = iv.by_role_of("pwrite64");
        assert_eq!(by_role[0].0, Role::Compaction);
        assert_eq!(by_role[0].1.count, 30);
        assert_eq!(by_role[1].0, Role::VerifyBlocks);
        assert_eq!(by_role[1].1.count, 20);
        let shares: f64 = by_role.iter().map(|(_, r)| r.time_share).sum();
        assert!((shares - 1.0).abs() < 1e-9);
        // Per-role percentiles only where the kernel keeps a per-role histogram.
        assert!(by_role[0].1.p50_us.is_some_and(|p| (p - 100.0).abs() < 7.0));
        assert_eq!(by_role[1].1.p50_us, None);

        let total: f64 = iv.syscalls.iter().map(|r| r.time_share).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(iv.syscall("sys_999").map(|r| r.count), Some(2));
        let exit = iv.syscall("exit_group").unwrap();
        assert_eq!((exit.count, exit.avg_us, exit.max_us), (1, None, None));

        let d = &iv.derived;
        assert_eq!((d.futex_calls, d.futex_waits), (100, 40));
        assert_eq!(d.futex_wait_ratio, Some(0.4));
        // 40 waits of 1 us over 2 s of 5 threads.
        assert!((d.futex_wait_time_share.unwrap() - 40e3 / 10e9).abs() < 1e-12);
        assert_eq!(
            d.write_bytes_per_call,
            Some((30.0 * 65_536.0 + 2_000.0) / 50.0)
        );
        assert_eq!(d.read_bytes_per_call, None);
        assert_eq!(d.epoll_wakes_per_sec, 25.0);
        assert_eq!(d.epoll_events_per_wake, Some(1.5));
        assert_eq!(d.fdatasync_calls, 4);
        assert_eq!(d.fdatasync_avg_us, Some(2_000.0));
        assert_eq!(
            d.fdatasync_p99_us,
            Some(2_000.0),
            "clamped to the exact max"
        );
    }

    #[test]
    fn empty_interval() {
        let (_, cur) = snapshots();
        let iv = interval(&cur, &cur, None, &BTreeMap::new());
        assert!(iv.syscalls.is_empty());
        assert!(iv.roles.is_empty());
        assert_eq!(iv.derived.futex_wait_ratio, None);
        assert_eq!(iv.derived.futex_wait_time_share, None);
        assert_eq!(iv.unpaired, 0);
    }
}
