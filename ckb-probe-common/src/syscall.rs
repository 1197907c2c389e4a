//! The syscall layer: thread roles, the system calls the kernel programs treat specially, and
//! the records they keep.
//!
//! The kernel programs know no syscall numbers: numbers differ between architectures, so user
//! space writes a kind per number (`SYS_KIND`, from [`KINDS`] and the running architecture's
//! table) and the kernel only tests bits. Roles are matched in the kernel on the thread name
//! (`comm`), from [`ROLE_RULES`], so that a `pwrite64` from compaction is counted apart from
//! one on the commit path even when both threads live for a second only.

/// What a thread does in a CKB node, told from its name (`/proc/PID/task/TID/comm`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Every thread no rule names.
    Other = 0,
    /// RocksDB's low-priority (and bottom-priority) pool: compaction.
    Compaction = 1,
    /// RocksDB's high-priority pool: memtable flush.
    Flush = 2,
    /// CKB's `verify_blocks`: block verification and the commit (WAL write) path.
    VerifyBlocks = 3,
    /// CKB's `ChainService`.
    ChainService = 4,
    /// tokio workers (`GlobalRt-N`): network, RPC, sync, indexer.
    Tokio = 5,
    /// rayon workers (`RayonGlobal-N`): script verification.
    Rayon = 6,
    /// `preload_unverif`: loads unverified blocks ahead of verification.
    Preload = 7,
    /// `BlockDownload`.
    BlockDownload = 8,
    /// The header map's sled database: its I/O pool (`sled-io-N`) and its periodic flusher
    /// (`log flusher`, which fsyncs).
    HeaderMap = 9,
    /// `LogWriter`: CKB's own log file.
    Logger = 10,
    /// The main thread, named after the executable `ckb` (freezer, startup).
    Main = 11,
}

/// Number of roles; role ids are `0..ROLE_COUNT`.
pub const ROLE_COUNT: usize = 12;

impl Role {
    /// Every role, in id order.
    pub const ALL: [Role; ROLE_COUNT] = [
        Role::Other,
        Role::Compaction,
        Role::Flush,
        Role::VerifyBlocks,
        Role::ChainService,
        Role::Tokio,
        Role::Rayon,
        Role::Preload,
        Role::BlockDownload,
        Role::HeaderMap,
        Role::Logger,
        Role::Main,
    ];

    /// The name used in tables, in JSON keys and by `--role`.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Other => "other",
            Role::Compaction => "compaction",
            Role::Flush => "flush",
            Role::VerifyBlocks => "verify_blocks",
            Role::ChainService => "chain_service",
            Role::Tokio => "tokio",
            Role::Rayon => "rayon",
            Role::Preload => "preload",
            Role::BlockDownload => "block_download",
            Role::HeaderMap => "header_map",
            Role::Logger => "logger",
            Role::Main => "main",
        }
    }

    pub fn from_id(id: u32) -> Option<Role> {
        Role::ALL.get(id as usize).copied()
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Length of a thread name as the kernel keeps it, NUL included.
pub const COMM_LEN: usize = 16;

/// Thread-name prefixes and their roles; the first match wins. A NUL in a prefix pins the end
/// of the name (`b"ckb\0"` is the thread named exactly `ckb`, not `ckb-miner`).
pub const ROLE_RULES: [(&[u8], Role); 13] = [
    (b"rocksdb:low", Role::Compaction),
    (b"rocksdb:bottom", Role::Compaction),
    (b"rocksdb:high", Role::Flush),
    (b"verify_blocks", Role::VerifyBlocks),
    (b"ChainService", Role::ChainService),
    (b"GlobalRt-", Role::Tokio),
    (b"RayonGlobal-", Role::Rayon),
    (b"preload_unverif", Role::Preload),
    (b"BlockDownload", Role::BlockDownload),
    (b"sled-io-", Role::HeaderMap),
    (b"log flusher", Role::HeaderMap),
    (b"LogWriter", Role::Logger),
    (b"ckb\0", Role::Main),
];

/// A prefix as two masked little-endian words of the 16-byte name: matching is four loads and
/// compares per rule, loop-free for the verifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommPattern {
    pub value: [u64; 2],
    pub mask: [u64; 2],
    pub role: u32,
}

const fn pattern(prefix: &[u8], role: Role) -> CommPattern {
    let mut value = [0u64; 2];
    let mut mask = [0u64; 2];
    let mut i = 0;
    while i < prefix.len() && i < COMM_LEN {
        let shift = (i % 8) * 8;
        value[i / 8] |= (prefix[i] as u64) << shift;
        mask[i / 8] |= 0xff << shift;
        i += 1;
    }
    CommPattern {
        value,
        mask,
        role: role as u32,
    }
}

const fn patterns() -> [CommPattern; ROLE_RULES.len()] {
    let mut out = [CommPattern {
        value: [0; 2],
        mask: [0; 2],
        role: 0,
    }; ROLE_RULES.len()];
    let mut i = 0;
    while i < ROLE_RULES.len() {
        out[i] = pattern(ROLE_RULES[i].0, ROLE_RULES[i].1);
        i += 1;
    }
    out
}

/// [`ROLE_RULES`] compiled into word patterns (at compile time, on both sides).
pub const ROLE_PATTERNS: [CommPattern; ROLE_RULES.len()] = patterns();

/// Role id of a thread name given as its two little-endian words (what the kernel program
/// reads from `bpf_get_current_comm`).
#[inline(always)]
pub fn role_of_words(w0: u64, w1: u64) -> u32 {
    let mut i = 0;
    while i < ROLE_PATTERNS.len() {
        let p = &ROLE_PATTERNS[i];
        if w0 & p.mask[0] == p.value[0] && w1 & p.mask[1] == p.value[1] {
            return p.role;
        }
        i += 1;
    }
    Role::Other as u32
}

/// The two little-endian words of a NUL-padded 16-byte name.
#[inline(always)]
pub fn comm_words(comm: &[u8; COMM_LEN]) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&comm[..8]);
    b.copy_from_slice(&comm[8..]);
    (u64::from_le_bytes(a), u64::from_le_bytes(b))
}

/// Role of a thread name as user space reads it (`comm` without its newline). Names longer than
/// the kernel keeps are cut as the kernel cuts them.
pub fn role_of_name(name: &[u8]) -> Role {
    let mut comm = [0u8; COMM_LEN];
    let n = name.len().min(COMM_LEN - 1);
    comm[..n].copy_from_slice(&name[..n]);
    let (w0, w1) = comm_words(&comm);
    Role::from_id(role_of_words(w0, w1)).unwrap_or(Role::Other)
}

/// Bits of `SYS_KIND[nr]`: how the kernel programs treat system call `nr`.
pub mod kind {
    /// A positive return is a number of bytes read.
    pub const READ_BYTES: u32 = 1 << 0;
    /// A positive return is a number of bytes written.
    pub const WRITE_BYTES: u32 = 1 << 1;
    /// The multiplexed `futex(2)`: whether a call waits is told by its operation (argument 1).
    pub const FUTEX: u32 = 1 << 2;
    /// Every call waits (`futex_waitv`, `futex_wait`).
    pub const ALWAYS_WAITS: u32 = 1 << 3;
    /// `epoll_wait` and friends: a positive return is a number of ready events.
    pub const EPOLL_WAIT: u32 = 1 << 4;
    /// `exit` and `exit_group`: their `sys_exit` never fires, so they are counted at entry.
    pub const NO_RETURN: u32 = 1 << 5;
    /// Keep a latency histogram per thread role (I/O calls whose origin matters).
    pub const ROLE_HIST: u32 = 1 << 6;
    /// `fsync`/`fdatasync`: durability barriers (user space only, for derived metrics).
    pub const SYNC: u32 = 1 << 7;
    /// `clone`, `clone3`, `fork`, `vfork`: the new task's first return (0) has no entry.
    pub const FORK: u32 = 1 << 8;
    /// Kinds whose positive return values are summed (`SysStats::ret_sum`).
    pub const RET_SUM: u32 = READ_BYTES | WRITE_BYTES | EPOLL_WAIT;
}

/// System calls with a kind, by name (the same names on every architecture that has them).
pub const KINDS: [(&str, u32); 29] = {
    use kind::*;
    [
        ("read", READ_BYTES | ROLE_HIST),
        ("pread64", READ_BYTES | ROLE_HIST),
        ("readv", READ_BYTES | ROLE_HIST),
        ("preadv", READ_BYTES | ROLE_HIST),
        ("preadv2", READ_BYTES | ROLE_HIST),
        ("recvfrom", READ_BYTES),
        ("recvmsg", READ_BYTES),
        ("write", WRITE_BYTES | ROLE_HIST),
        ("pwrite64", WRITE_BYTES | ROLE_HIST),
        ("writev", WRITE_BYTES | ROLE_HIST),
        ("pwritev", WRITE_BYTES | ROLE_HIST),
        ("pwritev2", WRITE_BYTES | ROLE_HIST),
        ("sendto", WRITE_BYTES),
        ("sendmsg", WRITE_BYTES),
        ("fsync", SYNC | ROLE_HIST),
        ("fdatasync", SYNC | ROLE_HIST),
        ("sync_file_range", ROLE_HIST),
        ("futex", FUTEX),
        ("futex_waitv", ALWAYS_WAITS),
        ("futex_wait", ALWAYS_WAITS),
        ("epoll_wait", EPOLL_WAIT),
        ("epoll_pwait", EPOLL_WAIT),
        ("epoll_pwait2", EPOLL_WAIT),
        ("exit", NO_RETURN),
        ("exit_group", NO_RETURN),
        ("clone", FORK),
        ("clone3", FORK),
        ("fork", FORK),
        ("vfork", FORK),
    ]
};

/// The kind bits of a system call name (0 for the rest).
pub fn kind_of_name(name: &str) -> u32 {
    KINDS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, k)| *k)
}

/// `futex(2)` operations that block the caller (after masking `FUTEX_PRIVATE_FLAG` and
/// `FUTEX_CLOCK_REALTIME`): FUTEX_WAIT 0, FUTEX_LOCK_PI 6, FUTEX_WAIT_BITSET 9,
/// FUTEX_WAIT_REQUEUE_PI 11, FUTEX_LOCK_PI2 13. A bit set per operation number.
pub const FUTEX_WAIT_OPS: u32 = 1 << 0 | 1 << 6 | 1 << 9 | 1 << 11 | 1 << 13;
/// `FUTEX_CMD_MASK`: the operation without its flag bits.
pub const FUTEX_CMD_MASK: u64 = 0x7f;

/// Whether futex operation `op` (the raw second argument) waits.
#[inline(always)]
pub fn futex_op_waits(op: u64) -> bool {
    let cmd = op & FUTEX_CMD_MASK;
    cmd < 32 && (FUTEX_WAIT_OPS >> cmd) & 1 == 1
}

/// Size of the `SYS_KIND` array: numbers at or above it have no kind (but are still counted).
pub const NR_MAX: u32 = 1024;

/// Run-time settings of the layer (the `SYS_CONF` array, index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysConf {
    /// Byte offset of the second syscall argument in the user `pt_regs` the `sys_enter`
    /// tracepoint receives (architecture-specific), for the futex operation.
    pub arg1_offset: u32,
    /// Byte offset of the syscall number in the `pt_regs` `sys_exit` receives (x86-64
    /// `orig_ax`, arm64 `syscallno`; the low 32 bits of the u64 there), to tell a new thread's
    /// first return from `clone` apart from a call that was in flight at attach time.
    pub nr_offset: u32,
    /// `CONF_*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// `arg1_offset` is valid: futex waits can be told from wakes.
pub const CONF_ARG1: u32 = 1 << 0;
/// `nr_offset` is valid.
pub const CONF_NR: u32 = 1 << 1;

/// Key of `SYS_STATS` and `SYS_ROLE_HIST`: one system call made by one role.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysKey {
    pub nr: u32,
    pub role: u32,
}

/// Aggregates for one `SysKey` on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysStats {
    pub count: u64,
    /// Returns in `-4095..=-1` (an errno).
    pub errors: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Sum of positive returns of `kind::RET_SUM` calls: bytes, or ready epoll events.
    pub ret_sum: u64,
    /// Calls that waited (futex wait operations, `futex_waitv`), and their time.
    pub waits: u64,
    pub wait_ns: u64,
}

impl SysStats {
    /// Folds another CPU's (or key's) row into this one.
    pub fn merge(&mut self, o: &SysStats) {
        self.count += o.count;
        self.errors += o.errors;
        self.total_ns += o.total_ns;
        self.max_ns = if o.max_ns > self.max_ns {
            o.max_ns
        } else {
            self.max_ns
        };
        self.ret_sum += o.ret_sum;
        self.waits += o.waits;
        self.wait_ns += o.wait_ns;
    }
}

/// A thread's system call in flight: its slot in `SYS_SLOTS` (see [`crate::THREAD_SLOTS`]),
/// or, when another thread owns that slot, its entry in `SYS_INFLIGHT` keyed by pid_tgid. It is
/// reused for the thread's next call: `start_ns == 0` means none is in flight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// pid_tgid of the thread owning a `SYS_SLOTS` slot (0: free); unused in the map.
    pub owner: u64,
    pub start_ns: u64,
    pub nr: u32,
    /// `INFLIGHT_*` bits.
    pub flags: u32,
}

/// The call in flight waits (a futex wait operation).
pub const INFLIGHT_WAIT: u32 = 1 << 0;

/// Indexes of the per-CPU `SYS_COUNTERS` array.
pub mod counter {
    /// Exits with no matching entry: calls in flight when the probe attached, or entries
    /// evicted from the in-flight map.
    pub const UNPAIRED: u32 = 0;
    /// Histogram updates lost because a histogram could not be created (map full, or no
    /// memory): percentiles then miss those calls; counts and averages do not.
    pub const HIST_FULL: u32 = 1;
    /// Calls not aggregated at all (statistics map full).
    pub const STATS_FULL: u32 = 2;
    /// First returns of new threads (or processes) from `clone`/`clone3`/`fork`/`vfork`:
    /// exits without an entry that are not lost data.
    pub const CHILD_STARTS: u32 = 3;
    pub const LEN: u32 = 4;
}

/// Capacities of the kernel maps. The in-flight map is an LRU: threads that die mid-call
/// (or exit through `exit`) leave a slot that is reclaimed, never a leak.
pub const INFLIGHT_MAX: u32 = 16_384;
/// Distinct (syscall, role) pairs; a busy node uses a few hundred. This and the histogram
/// maps are allocated per key on first use.
pub const STATS_MAX: u32 = 4_096;
/// Distinct syscalls with a histogram (2 KiB per CPU each).
pub const HIST_MAX: u32 = 256;
/// Distinct (I/O syscall, role) pairs with a histogram.
pub const ROLE_HIST_MAX: u32 = 256;

crate::user_pod!(SysConf, SysKey, SysStats, InFlight);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn roles_from_names() {
        for (name, role) in [
            ("rocksdb:low", Role::Compaction),
            ("rocksdb:low0", Role::Compaction),
            ("rocksdb:low12", Role::Compaction),
            ("rocksdb:bottom0", Role::Compaction),
            ("rocksdb:high", Role::Flush),
            ("rocksdb:high0", Role::Flush),
            ("rocksdb:user", Role::Other),
            ("verify_blocks", Role::VerifyBlocks),
            ("ChainService", Role::ChainService),
            ("GlobalRt-1", Role::Tokio),
            ("GlobalRt-12", Role::Tokio),
            ("GlobalRt", Role::Other),
            ("RayonGlobal-0", Role::Rayon),
            ("preload_unverif", Role::Preload),
            ("BlockDownload", Role::BlockDownload),
            ("sled-io-3", Role::HeaderMap),
            ("log flusher", Role::HeaderMap),
            ("LogWriter", Role::Logger),
            ("ckb", Role::Main),
            ("ckb-miner", Role::Other),
            ("ck", Role::Other),
            ("worker-x", Role::Other),
            ("", Role::Other),
            // Longer than the kernel keeps: cut at 15 bytes like the kernel.
            ("verify_blocks_and_more", Role::VerifyBlocks),
        ] {
            assert_eq!(role_of_name(name.as_bytes()), role, "{name}");
        }
    }

    #[test]
    fn role_ids_and_names_round_trip() {
        for (i, r) in Role::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(Role::from_id(i as u32), Some(*r));
            assert_eq!(Role::from_name(r.name()), Some(*r));
        }
        assert_eq!(Role::from_id(ROLE_COUNT as u32), None);
    }

    #[test]
    fn futex_waits() {
        // FUTEX_WAIT_PRIVATE = 128, FUTEX_WAKE_PRIVATE = 129, FUTEX_WAIT_BITSET|CLOCK_REALTIME.
        assert!(futex_op_waits(0));
        assert!(futex_op_waits(128));
        assert!(futex_op_waits(9 | 128 | 256));
        assert!(!futex_op_waits(1));
        assert!(!futex_op_waits(129));
        assert!(!futex_op_waits(10)); // FUTEX_WAKE_BITSET
        assert!(!futex_op_waits(u64::MAX));
    }

    #[test]
    fn kinds_are_unique() {
        for (i, (a, _)) in KINDS.iter().enumerate() {
            assert!(KINDS[i + 1..].iter().all(|(b, _)| a != b), "{a}");
        }
        assert_ne!(kind_of_name("pwrite64") & kind::WRITE_BYTES, 0);
        assert_eq!(kind_of_name("getppid"), 0);
    }
}
