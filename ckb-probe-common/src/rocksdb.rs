//! The RocksDB layer: which C functions are traced, how they group into operations, and the
//! records the kernel programs keep about them.

/// The operations ckb-probe reports (the spec's five, plus iterator steps counted apart).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Get = 0,
    Put = 1,
    Delete = 2,
    Write = 3,
    IterSeek = 4,
    IterNext = 5,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Get,
        Op::Put,
        Op::Write,
        Op::Delete,
        Op::IterSeek,
        Op::IterNext,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::Delete => "DELETE",
            Op::Write => "WRITE",
            Op::IterSeek => "ITER_SEEK",
            Op::IterNext => "ITER_NEXT",
        }
    }

    /// Whether a byte count is meaningful for this operation (shown as "—"/null otherwise).
    pub const fn has_bytes(self) -> bool {
        matches!(self, Op::Get | Op::Put | Op::Write)
    }
}

/// What the kernel program reads on return to classify a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Result_ {
    /// `rocksdb_pinnableslice_t*`: NULL is a miss; the value length is at offset 8.
    PinnableSlice,
    /// `char*` with the length written through a `size_t* vallen` argument.
    ValueWithLen,
    /// Nothing but the error pointer.
    Plain,
}

/// A traced RocksDB C API function.
#[derive(Clone, Copy, Debug)]
pub struct TracedFn {
    /// ELF symbol, e.g. `rocksdb_get_pinned_cf`.
    pub symbol: &'static str,
    /// Stem of the kernel program names: `<stem>_enter` (uprobe) and `<stem>_exit` (uretprobe).
    pub stem: &'static str,
    pub op: Op,
    /// Zero-based argument index of the column-family handle, if the function takes one.
    pub cf_arg: Option<u8>,
    pub result: Result_,
    /// Zero-based argument index of `char** errptr`, if any.
    pub err_arg: Option<u8>,
}

macro_rules! traced {
    ($($id:ident = $idx:literal: $sym:literal, $stem:literal, $op:ident, $cf:expr, $res:ident, $err:expr;)*) => {
        /// Function ids: the index into [`TRACED`], used as map keys on both sides.
        pub mod fn_id {
            $(pub const $id: u32 = $idx;)*
        }
        /// Every traced function, indexed by its id.
        pub const TRACED: [TracedFn; FN_COUNT] = [
            $(TracedFn { symbol: $sym, stem: $stem, op: Op::$op, cf_arg: $cf, result: Result_::$res, err_arg: $err },)*
        ];
    };
}

/// Number of traced functions.
pub const FN_COUNT: usize = 23;

// Argument positions follow RocksDB's include/rocksdb/c.h (identical in 7.8 and 8.5).
traced! {
    GET_PINNED_CF = 0: "rocksdb_get_pinned_cf", "get_pinned_cf", Get, Some(2), PinnableSlice, Some(5);
    TXN_GET_PINNED_CF = 1: "rocksdb_transaction_get_pinned_cf", "txn_get_pinned_cf", Get, Some(2), PinnableSlice, Some(5);
    TXN_GET_FOR_UPDATE_CF = 2: "rocksdb_transaction_get_for_update_cf", "txn_get_for_update_cf", Get, Some(2), ValueWithLen, Some(7);
    GET_PINNED = 3: "rocksdb_get_pinned", "get_pinned", Get, None, PinnableSlice, Some(4);
    GET = 4: "rocksdb_get", "get", Get, None, ValueWithLen, Some(5);
    GET_CF = 5: "rocksdb_get_cf", "get_cf", Get, Some(2), ValueWithLen, Some(6);
    TXN_PUT_CF = 6: "rocksdb_transaction_put_cf", "txn_put_cf", Put, Some(1), Plain, Some(6);
    PUT = 7: "rocksdb_put", "put", Put, None, Plain, Some(6);
    PUT_CF = 8: "rocksdb_put_cf", "put_cf", Put, Some(2), Plain, Some(7);
    BATCH_PUT_CF = 9: "rocksdb_writebatch_put_cf", "batch_put_cf", Put, Some(1), Plain, None;
    BATCH_PUT = 10: "rocksdb_writebatch_put", "batch_put", Put, None, Plain, None;
    TXN_DELETE_CF = 11: "rocksdb_transaction_delete_cf", "txn_delete_cf", Delete, Some(1), Plain, Some(4);
    DELETE = 12: "rocksdb_delete", "delete", Delete, None, Plain, Some(4);
    DELETE_CF = 13: "rocksdb_delete_cf", "delete_cf", Delete, Some(2), Plain, Some(5);
    BATCH_DELETE_CF = 14: "rocksdb_writebatch_delete_cf", "batch_delete_cf", Delete, Some(1), Plain, None;
    BATCH_DELETE = 15: "rocksdb_writebatch_delete", "batch_delete", Delete, None, Plain, None;
    TXN_COMMIT = 16: "rocksdb_transaction_commit", "txn_commit", Write, None, Plain, Some(1);
    WRITE = 17: "rocksdb_write", "write", Write, None, Plain, Some(3);
    ITER_SEEK = 18: "rocksdb_iter_seek", "iter_seek", IterSeek, None, Plain, None;
    ITER_SEEK_FOR_PREV = 19: "rocksdb_iter_seek_for_prev", "iter_seek_for_prev", IterSeek, None, Plain, None;
    ITER_SEEK_TO_FIRST = 20: "rocksdb_iter_seek_to_first", "iter_seek_to_first", IterSeek, None, Plain, None;
    ITER_SEEK_TO_LAST = 21: "rocksdb_iter_seek_to_last", "iter_seek_to_last", IterSeek, None, Plain, None;
    ITER_NEXT = 22: "rocksdb_iter_next", "iter_next", IterNext, None, Plain, None;
}

/// Arguments an entry program of function `fid` reads (bit n = argument n): its column family
/// and error pointer, and what the payload size and the owning transaction or batch come from.
/// An entry probe may be moved past instructions that leave all of these in place. Keep in step
/// with the entry programs in `ckb-probe-ebpf/src/rocksdb.rs`.
pub const fn entry_args(fid: u32) -> u16 {
    use fn_id as f;
    let t = &TRACED[fid as usize];
    let named = bit(t.cf_arg) | bit(t.err_arg);
    named
        | match fid {
            f::TXN_GET_FOR_UPDATE_CF | f::GET_CF => 1 << 5,
            f::GET => 1 << 4,
            f::TXN_PUT_CF | f::BATCH_PUT_CF => 1 | 1 << 3 | 1 << 5,
            f::PUT => 1 << 3 | 1 << 5,
            f::PUT_CF => 1 << 4 | 1 << 6,
            f::BATCH_PUT => 1 | 1 << 2 | 1 << 4,
            f::TXN_DELETE_CF | f::BATCH_DELETE_CF => 1 | 1 << 3,
            f::BATCH_DELETE => 1 | 1 << 2,
            f::TXN_COMMIT => 1,
            f::WRITE => 1 << 2,
            _ => 0,
        }
}

const fn bit(arg: Option<u8>) -> u16 {
    match arg {
        Some(n) => 1 << n,
        None => 0,
    }
}

/// What the `FORGET` programs read: the transaction or batch pointer.
pub const FORGET_ARGS: u16 = 1;

/// Functions probed only at entry, to forget per-transaction or per-batch byte totals that
/// end without a commit or write (a freed object's address is soon reused, by an object that
/// must start from zero). `rocksdb_writebatch_destroy` starts with an instruction
/// the kernel single-steps (`test %rdi,%rdi`, ~14 us a hit) in Debian's and CKB's builds; its
/// probe sits on the next one (see `symbols::entry_site`), once per batch.
/// `(symbol, program name)`.
pub const FORGET: [(&str, &str); 4] = [
    ("rocksdb_transaction_destroy", "txn_forget"),
    ("rocksdb_transaction_rollback", "txn_forget_rollback"),
    ("rocksdb_writebatch_clear", "batch_forget_clear"),
    ("rocksdb_writebatch_destroy", "batch_forget_destroy"),
];

/// Column-family slot of functions without a column-family argument (RocksDB's "default"
/// family).
pub const CF_DEFAULT: u64 = 0;
/// Column-family slot when the family could not be resolved (tracking off, unknown object
/// layout, or a family id beyond the slots).
pub const CF_UNKNOWN: u64 = 1;
/// Column-family slots per function in the statistics array: `CF_DEFAULT`, `CF_UNKNOWN`, then
/// one per RocksDB family id (`2 + id`). CKB's 19 columns and "default" take ids 0..=19.
pub const CF_SLOTS: u32 = 32;
/// Longest column-family name copied out of the target.
pub const CF_NAME_MAX: usize = 32;
/// `CfInfo::id` of a handle whose object layout did not validate.
pub const CF_ID_INVALID: u32 = u32::MAX;

/// The slot of RocksDB family `id` (`CF_UNKNOWN` for an invalid id or one beyond the slots).
/// Families are told apart by id, not by handle: a family has one id for the life of its
/// database, while each open handle to it is a different pointer.
#[inline(always)]
pub const fn cf_slot(id: u32) -> u64 {
    if id < CF_SLOTS - 2 {
        id as u64 + 2
    } else {
        CF_UNKNOWN
    }
}

/// Length of the per-CPU `ROCKS_STATS` array: one row per function and column-family slot.
pub const STATS_LEN: u32 = FN_COUNT as u32 * CF_SLOTS;

/// Index of the row of function `fn_id` and slot `cf` in `ROCKS_STATS`.
#[inline(always)]
pub const fn stats_index(fn_id: u32, cf: u64) -> u32 {
    fn_id * CF_SLOTS + cf as u32
}

/// Aggregates for one (function, column-family slot) on one CPU. 64 bytes: a return program
/// updates one row, and a row that straddles two cache lines costs a second miss.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    pub count: u64,
    pub errors: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub _pad: u64,
}

impl OpStats {
    /// Folds another CPU's (or key's) row into this one.
    pub fn merge(&mut self, o: &OpStats) {
        self.count += o.count;
        self.errors += o.errors;
        self.total_ns += o.total_ns;
        self.max_ns = if o.max_ns > self.max_ns {
            o.max_ns
        } else {
            self.max_ns
        };
        self.bytes += o.bytes;
        self.hits += o.hits;
        self.misses += o.misses;
    }
}

/// What the kernel learnt about a column-family handle (the `ROCKS_CF` map, keyed by handle).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CfInfo {
    /// RocksDB's column-family id, or `CF_ID_INVALID`.
    pub id: u32,
    pub name_len: u32,
    pub name: [u8; CF_NAME_MAX],
}

/// State saved at function entry for the matching return.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub fn_id: u32,
    pub _pad: u32,
    pub start_ns: u64,
    /// Column-family slot.
    pub cf: u64,
    pub bytes: u64,
    /// `size_t* vallen` for `ValueWithLen` functions.
    pub aux: u64,
    /// `char** errptr`, 0 when the function has none.
    pub errptr: u64,
}

/// Traced calls one thread can have in flight at once (traced functions do not call each
/// other, so one is the rule; deeper nesting is counted as unpaired).
pub const INFLIGHT_MAX: usize = 4;

/// The in-flight calls of one thread, innermost last: its slot in `ROCKS_THREAD_SLOTS` (see
/// [`crate::THREAD_SLOTS`]), or, when another thread owns that slot, its entry in the
/// `ROCKS_THREADS` map keyed by pid_tgid. Only its own thread reads
/// or writes it, so it is updated in place without a lock.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCalls {
    /// pid_tgid of the thread owning a `ROCKS_THREAD_SLOTS` slot (0: free); unused in the map.
    pub owner: u64,
    pub depth: u32,
    pub _pad: u32,
    pub calls: [Entry; INFLIGHT_MAX],
    /// To 256 bytes: in the page-aligned slot array, a thread's header and its first call then
    /// share one cache line, the only one a call that does not nest touches.
    pub _tail: [u64; 6],
}

/// Ring-buffer record kinds (records of one size still need a tag to be told apart).
pub const EVENT_SLOW_OP: u32 = 1;

pub const SLOW_FLAG_ERROR: u32 = 1 << 0;
pub const SLOW_FLAG_HIT: u32 = 1 << 1;
pub const SLOW_FLAG_MISS: u32 = 1 << 2;

/// One operation at or above the slow threshold.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlowEvent {
    pub kind: u32,
    pub fn_id: u32,
    pub tid: u32,
    pub flags: u32,
    /// `CLOCK_MONOTONIC` time of the return, ns.
    pub end_ns: u64,
    pub latency_ns: u64,
    pub bytes: u64,
    /// Column-family slot.
    pub cf: u64,
}

/// Indexes of the per-CPU `ROCKS_COUNTERS` array.
pub mod counter {
    /// Slow events dropped because the ring buffer was full.
    pub const RING_DROPS: u32 = 0;
    /// Returns with no matching entry (attached mid-call, thread evicted from the LRU map, or
    /// nested deeper than `INFLIGHT_MAX`).
    pub const UNPAIRED: u32 = 1;
    /// Column-family handles whose object layout did not validate.
    pub const CF_INVALID: u32 = 2;
    /// Calls not recorded at all because a map was full (the per-thread map could not take a
    /// new thread).
    pub const STATS_FULL: u32 = 3;
    pub const LEN: u32 = 4;
}

/// Capacities of the kernel maps (threads: also what bounds memory as threads come and go).
pub const THREADS_MAX: u32 = 8_192;
pub const CF_MAX: u32 = 1_024;
pub const ACCUM_MAX: u32 = 8_192;

/// Direct-mapped fast paths in front of the hash maps above, as for the per-thread records
/// ([`crate::THREAD_SLOTS`]): each slot is keyed by a value it stores, so a collision only sends
/// the call down the hash-map path; no count depends on which path it took. Powers of two.
///
/// Column-family handle -> slot cache, `(handle >> 4) % CF_CACHE_LEN`; a value packs the
/// handle (user addresses fit in 48 bits) with its slot above it.
pub const CF_CACHE_LEN: u32 = 256;
/// Open transactions and batches, `(pointer >> 4) % ACCUM_SLOTS`.
pub const ACCUM_SLOTS: u32 = 1_024;

/// Payload bytes of one open transaction or write batch (`ROCKS_ACCUM_SLOTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccumSlot {
    /// The transaction or batch pointer (0: free).
    pub owner: u64,
    pub bytes: u64,
}
/// 4 MiB: about 75,000 slow events between two drains of a starved consumer.
pub const RING_BYTES: u32 = 4 << 20;

crate::user_pod!(OpStats, CfInfo, Entry, ThreadCalls, SlowEvent);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_args_cover_the_named_arguments() {
        // (db, wo, cf, key, klen, val, vlen, errptr): cf, klen, vlen, errptr.
        assert_eq!(entry_args(fn_id::PUT_CF), 1 << 2 | 1 << 4 | 1 << 6 | 1 << 7);
        assert_eq!(entry_args(fn_id::ITER_NEXT), 0);
        for (id, t) in TRACED.iter().enumerate() {
            let m = entry_args(id as u32);
            for a in [t.cf_arg, t.err_arg].into_iter().flatten() {
                assert_ne!(m & 1 << a, 0, "{}", t.symbol);
            }
        }
    }

    #[test]
    fn table_ids_match_positions() {
        assert_eq!(
            TRACED[fn_id::ITER_NEXT as usize].symbol,
            "rocksdb_iter_next"
        );
        assert_eq!(TRACED[fn_id::TXN_COMMIT as usize].op, Op::Write);
        for (i, a) in TRACED.iter().enumerate() {
            for b in &TRACED[i + 1..] {
                assert_ne!(a.symbol, b.symbol);
                assert_ne!(a.stem, b.stem);
            }
        }
    }
}
