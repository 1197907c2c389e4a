//! Can this machine, and optionally this target process, be traced? (spec F-1)
//!
//! Each check reads one fact (a /proc or /sys file, or a feature probe through `bpf()`) and
//! says what to do when it is missing. `fail` means some ckb-probe layer cannot work; `warn`
//! means it works with a caveat; `info` is context that needs no action.

use crate::probe::net::NetPath;
use std::{fs, path::Path};

use aya::{maps::MapType, programs::ProgramType};
use ckb_probe_common::rocksdb::TRACED;
use serde::Serialize;

use crate::{
    symbols::{self, Linkage, ProbeCost, SymbolsError},
    target::{self, TargetError},
};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Info,
}

impl Status {
    pub const fn mark(self) -> &'static str {
        match self {
            Status::Ok => " ok ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do; set for `warn` and `fail`.
    pub hint: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Check {
            name,
            status,
            detail: detail.into(),
            hint: None,
        }
    }
    fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

/// What `check --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel_release: String,
    pub checks: Vec<Check>,
    /// No check failed.
    pub ready: bool,
}

/// Functions that a CKB node calls on every block or transaction: missing one of these means
/// the node's storage traffic is under-counted.
pub const HOT: [&str; 8] = [
    "rocksdb_get_pinned_cf",
    "rocksdb_transaction_get_pinned_cf",
    "rocksdb_transaction_put_cf",
    "rocksdb_transaction_delete_cf",
    "rocksdb_transaction_commit",
    "rocksdb_write",
    "rocksdb_iter_seek",
    "rocksdb_iter_next",
];

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The running kernel's release string (`uname -r`).
pub fn kernel_release() -> String {
    read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}

/// `(major, minor)` from a release like `6.18.44-fc-v769`.
pub fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// A field of `/proc/PID/status` (or `self`).
fn status_field(pid: &str, field: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

fn has_cap(cap_eff: u64, bit: u32) -> bool {
    cap_eff & (1u64 << bit) != 0
}

/// Why this process may or may not load BPF programs.
fn privileges() -> (bool, Check) {
    let euid = effective_uid();
    let cap_eff = status_field("self", "CapEff")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0);
    let bpf_perfmon = has_cap(cap_eff, CAP_BPF) && has_cap(cap_eff, CAP_PERFMON);
    let sys_admin = has_cap(cap_eff, CAP_SYS_ADMIN);
    let who = if euid == Some(0) { "root" } else { "not root" };
    let ok = bpf_perfmon || sys_admin;
    let check = if ok && !sys_admin && !uprobe_multi_kernel() {
        Check::new(
            "privileges",
            Status::Warn,
            format!("{who}, effective CAP_BPF+CAP_PERFMON without CAP_SYS_ADMIN"),
        )
        .hint("this kernel has no uprobe_multi links (Linux < 6.6), and perf-event uprobes need CAP_SYS_ADMIN: the RocksDB layer will not attach; add cap_sys_admin, or use Linux >= 6.6")
    } else if ok {
        let caps = match (bpf_perfmon, sys_admin) {
            (true, true) => "CAP_BPF+CAP_PERFMON and CAP_SYS_ADMIN",
            (true, false) => "CAP_BPF+CAP_PERFMON",
            _ => "CAP_SYS_ADMIN",
        };
        Check::new("privileges", Status::Ok, format!("{who}, effective {caps}"))
    } else {
        Check::new(
            "privileges",
            Status::Fail,
            format!("{who}, without CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN (CapEff {cap_eff:#x})"),
        )
        .hint("run as root (sudo ckb-probe ...), or grant the binary the capabilities: `setcap cap_bpf,cap_perfmon+ep $(which ckb-probe)`")
    };
    (ok, check)
}

/// uprobe_multi links (BPF_TRACE_UPROBE_MULTI) came with Linux 6.6; ckb-probe attaches uprobes
/// through them there, and otherwise falls back to perf-event uprobes at attach time.
fn uprobe_multi_kernel() -> bool {
    parse_release(&kernel_release()).is_some_and(|v| v >= (6, 6))
}

/// The effective uid, from /proc (no libc call needed).
fn effective_uid() -> Option<u32> {
    status_field("self", "Uid")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn kernel_check(release: &str) -> Check {
    match parse_release(release) {
        Some(v) if v >= (5, 8) => Check::new(
            "kernel",
            Status::Ok,
            format!("{release} (>= 5.8: ring buffer, CAP_BPF)"),
        ),
        Some(_) => Check::new(
            "kernel",
            Status::Fail,
            format!("{release} is older than 5.8"),
        )
        .hint("ckb-probe needs Linux 5.8 or newer (BPF ring buffer); upgrade the kernel"),
        None => Check::new(
            "kernel",
            Status::Warn,
            format!("cannot parse the release {release:?}"),
        )
        .hint("make sure the kernel is 5.8 or newer (`uname -r`)"),
    }
}

fn btf_check() -> Check {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Check::new("btf", Status::Ok, "/sys/kernel/btf/vmlinux present")
    } else {
        Check::new("btf", Status::Warn, "/sys/kernel/btf/vmlinux missing")
            .hint("programs relying on CO-RE relocations cannot adapt to this kernel; use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    }
}

/// `bpf()` itself, then the program and map types the probes use (aya's feature probes load
/// a trivial program or create a tiny map of each type).
fn bpf_checks(privileged: bool) -> Vec<Check> {
    let mut out = Vec::new();
    match aya::sys::is_map_supported(MapType::Array) {
        Ok(true) => out.push(Check::new("bpf syscall", Status::Ok, "bpf() creates maps")),
        Ok(false) => {
            out.push(
                Check::new("bpf syscall", Status::Fail, "bpf() refuses a plain array map")
                    .hint("the kernel lacks BPF support (CONFIG_BPF_SYSCALL); use a standard distribution kernel"),
            );
            return out;
        }
        Err(e) => {
            let hint = if privileged {
                "bpf() is blocked although privileges look sufficient: a seccomp filter, an LSM (e.g. lockdown) or a container runtime may forbid it; run on the host or in a privileged container"
            } else {
                "run as root, or with CAP_BPF+CAP_PERFMON"
            };
            out.push(
                Check::new(
                    "bpf syscall",
                    Status::Fail,
                    format!("bpf() failed: {}", e.io_error),
                )
                .hint(hint),
            );
            return out;
        }
    }

    let programs = [
        (ProgramType::KProbe, "kprobe/uprobe"),
        (ProgramType::TracePoint, "tracepoint"),
        (ProgramType::RawTracePoint, "raw_tracepoint"),
    ];
    let mut ok = Vec::new();
    let mut missing = Vec::new();
    for (t, name) in programs {
        match aya::sys::is_program_supported(t) {
            Ok(true) => ok.push(name.to_string()),
            Ok(false) => missing.push(name.to_string()),
            Err(e) => missing.push(format!("{name} ({e})")),
        }
    }
    out.push(if missing.is_empty() {
        Check::new("bpf program types", Status::Ok, ok.join(", "))
    } else {
        Check::new(
            "bpf program types",
            Status::Fail,
            format!("not supported: {}", missing.join(", ")),
        )
        .hint("the kernel lacks these program types; use a kernel >= 5.8 with CONFIG_BPF_EVENTS")
    });

    let maps = [
        (MapType::RingBuf, "ringbuf"),
        (MapType::Hash, "hash"),
        (MapType::PerCpuHash, "percpu_hash"),
        (MapType::PerCpuArray, "percpu_array"),
        (MapType::LruHash, "lru_hash"),
        (MapType::Array, "array"),
    ];
    let mut ok = Vec::new();
    let mut missing = Vec::new();
    for (t, name) in maps {
        match aya::sys::is_map_supported(t) {
            Ok(true) => ok.push(name.to_string()),
            Ok(false) => missing.push(name.to_string()),
            Err(e) => missing.push(format!("{name} ({})", e.io_error)),
        }
    }
    out.push(if missing.is_empty() {
        Check::new("bpf map types", Status::Ok, ok.join(", "))
    } else {
        Check::new(
            "bpf map types",
            Status::Fail,
            format!("not supported: {}", missing.join(", ")),
        )
        .hint("the ring buffer needs Linux 5.8; upgrade the kernel")
    });
    out
}

/// Where tracefs is mounted, if it is.
fn tracefs() -> Option<&'static str> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|d| Path::new(d).join("events").is_dir())
}

fn probe_checks() -> Vec<Check> {
    let mut out = Vec::new();
    let pmu = Path::new("/sys/bus/event_source/devices/uprobe").exists();
    let tracefs = tracefs();
    let uprobe_events = tracefs.is_some_and(|t| Path::new(t).join("uprobe_events").exists());
    out.push(if uprobe_multi_kernel() {
        Check::new(
            "uprobes",
            Status::Ok,
            "uprobe_multi links (Linux >= 6.6): CAP_BPF+CAP_PERFMON suffice",
        )
    } else if pmu {
        Check::new(
            "uprobes",
            Status::Ok,
            "uprobe PMU at /sys/bus/event_source/devices/uprobe (perf-event uprobes: CAP_SYS_ADMIN)",
        )
    } else if uprobe_events {
        Check::new(
            "uprobes",
            Status::Ok,
            "uprobe_events in tracefs (no uprobe PMU)",
        )
    } else {
        Check::new(
            "uprobes",
            Status::Fail,
            "no uprobe PMU and no tracefs uprobe_events",
        )
        .hint("the RocksDB layer needs uprobes: use a kernel built with CONFIG_UPROBE_EVENTS=y")
    });

    let kpmu = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let kevents = tracefs.is_some_and(|t| Path::new(t).join("kprobe_events").exists());
    out.push(if kpmu || kevents {
        Check::new(
            "kprobes",
            Status::Ok,
            if kpmu { "kprobe PMU present" } else { "kprobe_events in tracefs" },
        )
    } else {
        Check::new(
            "kprobes",
            Status::Info,
            "unavailable (no kprobe PMU, no kprobe_events): only the net layer's fallback for kernels without sock tracepoints needs kprobes",
        )
    });

    out.push(match tracefs {
        Some(t) => Check::new("tracefs", Status::Ok, format!("mounted at {t}")),
        None => Check::new("tracefs", Status::Warn, "not mounted (no /sys/kernel/tracing/events)")
            .hint("classic tracepoints (the net layer) need it: `mount -t tracefs tracefs /sys/kernel/tracing`"),
    });

    // The net layer's own feature detection decides its path; `check` reports that decision.
    let path = crate::probe::net::detect_path();
    out.push(match &path {
        NetPath::Tracepoints {
            retransmits: true, ..
        } => Check::new("net layer", Status::Ok, path.describe()),
        NetPath::Tracepoints { .. } => Check::new("net layer", Status::Warn, path.describe()).hint(
            "peers, bytes and connection events still work; only retransmits are not counted",
        ),
        NetPath::Kprobes { .. } => Check::new("net layer", Status::Ok, path.describe()),
        NetPath::Unavailable { why } => {
            Check::new("net layer", Status::Warn, "unavailable").hint(why.clone())
        }
    });
    out
}

fn sysctl_checks(release: Option<(u32, u32)>, privileged: bool) -> Vec<Check> {
    let mut out = Vec::new();
    let paranoid = read_trim("/proc/sys/kernel/perf_event_paranoid");
    out.push(Check::new(
        "perf_event_paranoid",
        Status::Info,
        match (&paranoid, privileged) {
            (Some(v), true) => format!("{v} (no effect with CAP_PERFMON or root)"),
            (Some(v), false) => v.clone(),
            (None, _) => "unreadable".into(),
        },
    ));
    let unpriv = read_trim("/proc/sys/kernel/unprivileged_bpf_disabled");
    out.push(Check::new(
        "unprivileged_bpf_disabled",
        Status::Info,
        match unpriv.as_deref() {
            Some("0") => "0 (unprivileged BPF allowed)".to_string(),
            Some(v) => format!("{v} (loading needs CAP_BPF or root)"),
            None => "unreadable".into(),
        },
    ));

    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            format!("{} KiB", v / 1024)
        }
    };
    out.push(if release.is_some_and(|r| r >= (5, 11)) {
        Check::new(
            "memlock",
            Status::Ok,
            format!(
                "RLIMIT_MEMLOCK {} (irrelevant: kernel >= 5.11 charges BPF memory to the memory cgroup)",
                if rc == 0 { show(lim.rlim_cur) } else { "unknown".into() }
            ),
        )
    } else if rc == 0 && (lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= 64 << 20) {
        Check::new("memlock", Status::Ok, format!("RLIMIT_MEMLOCK {}", show(lim.rlim_cur)))
    } else {
        Check::new(
            "memlock",
            Status::Warn,
            format!(
                "RLIMIT_MEMLOCK {} on a kernel < 5.11, where BPF maps count against it",
                if rc == 0 { show(lim.rlim_cur) } else { "unknown".into() }
            ),
        )
        .hint("raise it: `ulimit -l unlimited` (or LimitMEMLOCK=infinity in a systemd unit)")
    });
    out
}

/// Checks about the target process. `Err` only when the PID does not name a usable process.
fn target_checks(pid: u32, release: Option<(u32, u32)>) -> Result<Vec<Check>, TargetError> {
    let p = target::process(pid)?;
    let mut out = vec![Check::new(
        "target",
        Status::Ok,
        format!(
            "PID {pid} `{}`, executable {}",
            p.command(),
            p.exe.display()
        ),
    )];

    match symbols::rocksdb_sites(&p) {
        Err(SymbolsError::Target(e)) => return Err(e),
        Err(e) => out.push(
            Check::new("rocksdb linkage", Status::Fail, e.to_string())
                .hint("ckb-probe reads the target's executable through /proc/PID/exe; run as root"),
        ),
        Ok(sites) => {
            out.push(match &sites.linkage {
                Linkage::Static => Check::new(
                    "rocksdb linkage",
                    Status::Ok,
                    format!("static: rocksdb_* functions in {}", sites.display.display()),
                ),
                Linkage::Dynamic { library } => Check::new(
                    "rocksdb linkage",
                    Status::Ok,
                    format!("dynamic: {}", library.display()),
                ),
                Linkage::None => Check::new(
                    "rocksdb linkage",
                    Status::Fail,
                    format!(
                        "none: no rocksdb_* functions in {} or its libraries",
                        p.exe.display()
                    ),
                )
                .hint(format!("is this the CKB node? If it is, its binary may be stripped: run `ckb-probe symbols --pid {pid}` for details")),
            });
            if sites.linkage != Linkage::None {
                out.push(traced_check(pid, &sites.sites));
                out.push(cost_check(&sites.sites));
            }
        }
    }
    out.push(seccomp_check(pid, release));
    Ok(out)
}

fn traced_check(pid: u32, sites: &std::collections::BTreeMap<String, symbols::Site>) -> Check {
    let missing: Vec<&str> = TRACED
        .iter()
        .map(|t| t.symbol)
        .filter(|s| !sites.contains_key(*s))
        .collect();
    let present = TRACED.len() - missing.len();
    let hot_missing: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|m| HOT.contains(m))
        .collect();
    if present == 0 {
        Check::new(
            "traced functions",
            Status::Fail,
            format!("none of the {} traced rocksdb_* functions is present", TRACED.len()),
        )
        .hint(format!("this RocksDB build exports a different C API; run `ckb-probe symbols --pid {pid} --all` to see what it has"))
    } else if !hot_missing.is_empty() {
        Check::new(
            "traced functions",
            Status::Warn,
            format!(
                "{present}/{} present; missing hot-path functions: {}",
                TRACED.len(),
                hot_missing.join(", ")
            ),
        )
        .hint("this CKB build reaches RocksDB through other functions: their operations will be missing from the statistics")
    } else if missing.is_empty() {
        Check::new(
            "traced functions",
            Status::Ok,
            format!("all {} present and attachable", TRACED.len()),
        )
    } else {
        // A function absent from a statically linked binary is never called by it.
        Check::new(
            "traced functions",
            Status::Ok,
            format!(
                "{present}/{} present, every hot-path one included; not linked (so never called): {}",
                TRACED.len(),
                missing.join(", ")
            ),
        )
    }
}

fn cost_check(sites: &std::collections::BTreeMap<String, symbols::Site>) -> Check {
    let slow: Vec<String> = TRACED
        .iter()
        .filter_map(|t| {
            let s = sites.get(t.symbol)?;
            (s.probe_cost == ProbeCost::SingleStep)
                .then(|| format!("{} ({})", t.symbol, s.first_insn))
        })
        .collect();
    let present = TRACED
        .iter()
        .filter(|t| sites.contains_key(t.symbol))
        .count();
    if slow.is_empty() {
        Check::new(
            "probe cost",
            Status::Ok,
            format!("all {present} present traced functions start with an emulated instruction"),
        )
    } else {
        Check::new(
            "probe cost",
            Status::Warn,
            format!(
                "{} of {present} traced functions start with a single-stepped instruction: {}",
                slow.len(),
                slow.join(", ")
            ),
        )
        .hint("each call of these costs ~14 us more while probed (the kernel single-steps the first instruction; ~0.4 us when emulated): mind the overhead on iterator-heavy workloads")
    }
}

fn seccomp_check(pid: u32, release: Option<(u32, u32)>) -> Check {
    seccomp_verdict(
        status_field(&pid.to_string(), "Seccomp").as_deref(),
        release,
    )
}

/// The verdict for a `Seccomp:` mode (0 none, 1 strict, 2 filter) on kernel `release`.
fn seccomp_verdict(mode: Option<&str>, release: Option<(u32, u32)>) -> Check {
    let new_kernel = release.is_some_and(|r| r >= (6, 11));
    match mode {
        Some("2") if new_kernel => Check::new(
            "target seccomp",
            Status::Warn,
            "the target runs under a seccomp filter on a kernel >= 6.11, where uretprobes return through the `uretprobe` syscall: a filter that does not allow it kills the process (systemd#34615)",
        )
        .hint("allow the uretprobe syscall in the unit's SystemCallFilter= (or run the node without the filter) before tracing"),
        Some("2") => Check::new(
            "target seccomp",
            Status::Ok,
            "filtered, but kernels before 6.11 return from uretprobes without a syscall",
        ),
        Some("1") => Check::new("target seccomp", Status::Info, "strict mode"),
        Some("0") => Check::new("target seccomp", Status::Ok, "no seccomp filter"),
        _ => Check::new("target seccomp", Status::Info, "unknown (no Seccomp field in /proc/PID/status)"),
    }
}

/// The inode of the initial PID namespace (the kernel's `PROC_PID_INIT_INO`): a process whose
/// `/proc/self/ns/pid` is another one runs in a container's PID namespace.
const PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// Whether ckb-probe runs outside the host's PID namespace (then its PIDs are not the kernel's).
pub fn in_foreign_pid_namespace() -> bool {
    pid_namespace_check().status == Status::Warn
}

fn pid_namespace_check() -> Check {
    let link = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    pid_namespace_verdict(&link)
}

fn pid_namespace_verdict(link: &str) -> Check {
    let ino = link
        .strip_prefix("pid:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse::<u64>().ok());
    match ino {
        Some(PID_INIT_INO) => Check::new("pid namespace", Status::Ok, "the host's"),
        Some(_) => Check::new(
            "pid namespace",
            Status::Warn,
            format!("{link}: ckb-probe runs in a container's PID namespace"),
        )
        .hint(
            "the kernel filters by host PIDs, which this namespace does not show: run ckb-probe's \
             container in the host PID namespace (docker/podman --pid=host, compose `pid: host`, \
             Kubernetes hostPID: true)",
        ),
        None => Check::new(
            "pid namespace",
            Status::Info,
            "unknown (no /proc/self/ns/pid)",
        ),
    }
}

/// Without `--pid`: mention the CKB node `check --pid` could look at.
fn node_hint() -> Check {
    let nodes = target::find_ckb_nodes();
    match nodes.as_slice() {
        [] => Check::new(
            "ckb node",
            Status::Info,
            "no running CKB node found (pass --pid PID to check a target)",
        ),
        [p] => Check::new(
            "ckb node",
            Status::Info,
            format!(
                "PID {} `{}`: run `check --pid {}` to check it",
                p.pid,
                p.command(),
                p.pid
            ),
        ),
        many => Check::new(
            "ckb node",
            Status::Info,
            format!(
                "several: {}",
                many.iter()
                    .map(|p| format!("PID {}", p.pid))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// Runs every check; with `pid`, the target's too. `Err` when `pid` is not a usable process.
pub fn run(pid: Option<u32>) -> Result<Report, TargetError> {
    let kernel_release = kernel_release();
    let release = parse_release(&kernel_release);
    let mut checks = vec![kernel_check(&kernel_release), btf_check()];
    let (privileged, priv_check) = privileges();
    checks.push(priv_check);
    checks.extend(bpf_checks(privileged));
    checks.extend(probe_checks());
    checks.extend(sysctl_checks(release, privileged));
    checks.push(pid_namespace_check());
    match pid {
        Some(pid) => checks.extend(target_checks(pid, release)?),
        None => checks.push(node_hint()),
    }
    let ready = !checks.iter().any(|c| c.status == Status::Fail);
    Ok(Report {
        kernel_release,
        checks,
        ready,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_parsing() {
        assert_eq!(parse_release("6.18.44-fc-v769"), Some((6, 18)));
        assert_eq!(parse_release("5.8.0"), Some((5, 8)));
        assert_eq!(parse_release("4.19"), Some((4, 19)));
        assert_eq!(parse_release("weird"), None);
        assert_eq!(kernel_check("5.4.0").status, Status::Fail);
        assert_eq!(kernel_check("5.8.0").status, Status::Ok);
        assert_eq!(kernel_check("x").status, Status::Warn);
    }

    #[test]
    fn pid_namespaces() {
        assert_eq!(pid_namespace_verdict("pid:[4026531836]").status, Status::Ok);
        let c = pid_namespace_verdict("pid:[4026532712]");
        assert_eq!(c.status, Status::Warn);
        assert!(c.hint.unwrap().contains("--pid=host"));
        assert_eq!(pid_namespace_verdict("").status, Status::Info);
    }

    #[test]
    fn caps() {
        assert!(has_cap(1 << 39, CAP_BPF));
        assert!(!has_cap(1 << 38, CAP_BPF));
    }

    fn sites(names: &[&str], cost: ProbeCost) -> std::collections::BTreeMap<String, symbols::Site> {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    symbols::Site {
                        file_offset: 0x1000,
                        probe_cost: cost,
                        first_insn: "x".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn traced_statuses() {
        let all: Vec<&str> = TRACED.iter().map(|t| t.symbol).collect();
        assert_eq!(
            traced_check(1, &sites(&all, ProbeCost::Emulated)).status,
            Status::Ok
        );
        assert_eq!(
            traced_check(1, &sites(&HOT, ProbeCost::Emulated)).status,
            Status::Ok
        );
        assert_eq!(
            traced_check(1, &sites(&HOT[1..], ProbeCost::Emulated)).status,
            Status::Warn
        );
        assert_eq!(
            traced_check(1, &sites(&[], ProbeCost::Emulated)).status,
            Status::Fail
        );
        assert_eq!(
            cost_check(&sites(&HOT, ProbeCost::Emulated)).status,
            Status::Ok
        );
        let c = cost_check(&sites(&HOT, ProbeCost::SingleStep));
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.starts_with("8 of 8"), "{}", c.detail);
    }

    #[test]
    fn seccomp_verdicts() {
        assert_eq!(
            seccomp_verdict(Some("2"), Some((6, 11))).status,
            Status::Warn
        );
        assert!(seccomp_verdict(Some("2"), Some((6, 18))).hint.is_some());
        assert_eq!(seccomp_verdict(Some("2"), Some((6, 10))).status, Status::Ok);
        assert_eq!(seccomp_verdict(Some("0"), Some((6, 18))).status, Status::Ok);
        assert_eq!(
            seccomp_verdict(Some("1"), Some((6, 18))).status,
            Status::Info
        );
        assert_eq!(seccomp_verdict(None, None).status, Status::Info);
    }

    #[test]
    fn self_target() {
        let checks = target_checks(std::process::id(), Some((6, 18))).expect("self");
        let link = checks
            .iter()
            .find(|c| c.name == "rocksdb linkage")
            .expect("row");
        assert_eq!(link.status, Status::Fail);
        assert!(link.detail.starts_with("none"));
        assert!(matches!(
            target_checks(999_999_999, None),
            Err(TargetError::NoSuchProcess { .. })
        ));
    }
}
