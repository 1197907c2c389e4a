//! Probe lifecycle: the embedded kernel object, loading it, run-time configuration, attaching
//! each layer's programs. Detaching is dropping the [`Engine`]: every link is a file descriptor
//! owned by it (nothing is pinned), so even a killed ckb-probe leaves no probe behind.

pub mod net;
pub mod rocksdb;
pub mod syscall;
pub mod uprobe_multi;

use aya::{Ebpf, EbpfLoader, maps::Array};
use ckb_probe_common::config::Config;

/// The kernel programs, built by build.rs from ckb-probe-ebpf.
static BPF_ELF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ckb-probe-bpf"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this ckb-probe binary was built without its eBPF programs (CKB_PROBE_SKIP_EBPF=1); \
         run scripts/bootstrap.sh, then rebuild"
    )]
    NotEmbedded,
    #[error(
        "permission denied loading eBPF programs: run as root, or grant CAP_BPF and CAP_PERFMON \
         (`ckb-probe check` lists what is missing)"
    )]
    Permission,
    #[error("loading the eBPF object failed; run `ckb-probe check` to see what this kernel lacks")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program {name} could not be loaded or attached")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF program {name} could not be attached through a uprobe_multi link")]
    Multi {
        name: String,
        #[source]
        source: uprobe_multi::MultiError,
    },
    #[error("eBPF map {name} is missing or unusable")]
    Map {
        name: &'static str,
        #[source]
        source: Option<aya::maps::MapError>,
    },
    #[error("none of the traced functions could be attached in {object}")]
    NothingAttached { object: String },
}

impl ProbeError {
    /// Maps an aya map error on map `name` (for `map_err`).
    pub fn map(name: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
        move |e| ProbeError::Map {
            name,
            source: Some(e),
        }
    }
}

/// How uprobes are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Uprobes {
    /// uprobe_multi links (kernel >= 6.6): CAP_BPF + CAP_PERFMON suffice.
    #[serde(rename = "uprobe_multi")]
    Multi,
    /// perf-event uprobes (older kernels): CAP_SYS_ADMIN since 2025.
    #[serde(rename = "perf_event")]
    PerfEvent,
}

impl Uprobes {
    pub const fn as_str(self) -> &'static str {
        match self {
            Uprobes::Multi => "uprobe_multi",
            Uprobes::PerfEvent => "perf_event",
        }
    }
}

/// Forces perf-event uprobes (`CKB_PROBE_UPROBES=perf_event`): a diagnostic knob, e.g. to
/// compare the two mechanisms' cost per hit.
pub const UPROBES_ENV: &str = "CKB_PROBE_UPROBES";

/// One loaded eBPF object shared by every layer of one ckb-probe run.
pub struct Engine {
    pub ebpf: Ebpf,
    /// Programs prepared for uprobe_multi links, while that mechanism is in use.
    multi: Option<uprobe_multi::Loader>,
    /// uprobe_multi links; closing one detaches it.
    links: Vec<Option<std::os::fd::OwnedFd>>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Releasing a uprobe_multi link waits for an RCU grace period (about 70 ms here, by
        // strace): closed one after another, 46 links kept ckb-probe 3 s in its exit. Closed
        // concurrently, the waits overlap.
        let links: Vec<_> = self.links.drain(..).flatten().collect();
        std::thread::scope(|s| {
            for link in links {
                s.spawn(move || drop(link));
            }
        });
    }
}

fn is_permission(e: &aya::EbpfError) -> bool {
    let text = format!("{e:?}");
    text.contains("EPERM") || text.contains("PermissionDenied") || text.contains("os error 1)")
}

impl Engine {
    /// Loads the embedded object (maps are created; programs are loaded per layer on attach).
    pub fn load(config: Config) -> Result<Self, ProbeError> {
        if BPF_ELF.is_empty() {
            return Err(ProbeError::NotEmbedded);
        }
        raise_memlock();
        let mut loader = EbpfLoader::new();
        if config.slow_threshold_ns == u64::MAX {
            // No slow log, so no slow event is ever written: the ring buffer (4 MiB, which
            // user space maps twice, 8 MiB of ckb-probe's RSS) is made as small as the kernel
            // allows. The threshold cannot be lowered later (see `set_config`).
            loader.map_max_entries(SLOW_EVENTS_MAP, page_size());
        }
        let ebpf = loader.load(BPF_ELF).map_err(|e| {
            if is_permission(&e) {
                ProbeError::Permission
            } else {
                ProbeError::Load(e)
            }
        })?;
        // Prepared now, while every map is still in the object (collectors take theirs later).
        let multi = match std::env::var(UPROBES_ENV).as_deref() {
            Ok("perf_event") => None,
            _ => uprobe_multi::Loader::new(&ebpf, BPF_ELF)
                .inspect_err(|e| tracing::debug!("{e}; using perf-event uprobes"))
                .ok(),
        };
        let mut engine = Engine {
            ebpf,
            multi,
            links: Vec::new(),
        };
        engine.set_config(config)?;
        Ok(engine)
    }

    /// The mechanism the next uprobe attach will use.
    pub fn uprobes(&self) -> Uprobes {
        if self.multi.is_some() {
            Uprobes::Multi
        } else {
            Uprobes::PerfEvent
        }
    }

    /// Attaches program `name` (a uprobe or uretprobe) at `offset` in `object` for process `pid`
    /// through a uprobe_multi link. `Ok(None)`: the engine uses perf-event uprobes.
    pub fn attach_multi(
        &mut self,
        name: &str,
        object: &std::path::Path,
        offset: u64,
        pid: u32,
    ) -> Result<Option<usize>, uprobe_multi::MultiError> {
        let Some(loader) = self.multi.as_mut() else {
            return Ok(None);
        };
        match loader.attach(name, object, offset, pid) {
            Ok(link) => {
                self.links.push(Some(link));
                Ok(Some(self.links.len() - 1))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether a uprobe_multi link was made: once one was, the mechanism works on this kernel.
    pub fn multi_proven(&self) -> bool {
        !self.links.is_empty()
    }

    /// Uses perf-event uprobes from now on (the kernel refused the first uprobe_multi link
    /// where a perf-event uprobe worked: too old, or built without them).
    pub fn fall_back_to_perf_event(&mut self, why: &dyn std::error::Error) {
        tracing::debug!("uprobe_multi refused ({why}); using perf-event uprobes");
        self.multi = None;
    }

    /// Detaches a link made by [`Engine::attach_multi`].
    pub fn detach_multi(&mut self, index: usize) {
        // Emptied, not removed, so the other indices stay valid; dropping the fd detaches.
        if let Some(link) = self.links.get_mut(index) {
            *link = None;
        }
    }

    /// Writes the run-time configuration every program reads on each event. A slow threshold
    /// needs an engine loaded with one: without, the slow-event ring buffer holds one page.
    pub fn set_config(&mut self, config: Config) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut("CONFIG").ok_or(ProbeError::Map {
            name: "CONFIG",
            source: None,
        })?;
        let mut array: Array<_, Config> =
            Array::try_from(map).map_err(ProbeError::map("CONFIG"))?;
        array.set(0, config, 0).map_err(ProbeError::map("CONFIG"))
    }

    /// Takes a map out of the object as its typed wrapper, for a collector to own.
    pub fn map<T>(&mut self, name: &'static str) -> Result<T, ProbeError>
    where
        T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
    {
        T::try_from(self.take_map(name)?).map_err(ProbeError::map(name))
    }

    /// Takes a map out of the object for a collector to own.
    pub fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, ProbeError> {
        self.ebpf
            .take_map(name)
            .ok_or(ProbeError::Map { name, source: None })
    }
}

/// The error and its causes on one line, as an attach failure is reported per function; a
/// verifier log is cut to its last lines ([`verifier_tail`]).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = cause_text(e);
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&cause_text(c));
        cur = c.source();
    }
    if let Some(at) = s.find("Verifier output:") {
        s = format!("{} {}", s[..at].trim_end(), verifier_tail(&s[at..]));
    }
    s
}

/// The kernel's ENOTSUPP, an errno it keeps to itself: libc has no name for it, so it would
/// print as "Unknown error 524".
pub(crate) const ENOTSUPP: i32 = 524;

/// The bpf(2) system call, for the commands Aya 0.14 does not offer (uprobe_multi links, batch
/// map reads): its non-negative return value (a new descriptor for the commands that make one).
pub(crate) fn sys_bpf(
    cmd: aya_obj::generated::bpf_cmd,
    attr: &mut aya_obj::generated::bpf_attr,
) -> std::io::Result<i64> {
    // SAFETY: the bpf(2) syscall with a fully initialised attribute union of its own size; the
    // pointers in it address live buffers large enough for what the command writes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut aya_obj::generated::bpf_attr,
            size_of::<aya_obj::generated::bpf_attr>() as libc::c_long,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// One error of a chain as the user reads it: an errno libc cannot name is said in words, with
/// what it means for the probe.
pub fn cause_text(e: &(dyn std::error::Error + 'static)) -> String {
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::raw_os_error)
    {
        // A uprobe (or kprobe) on an instruction the kernel's decoder refuses, e.g. `hlt`.
        Some(ENOTSUPP) => "the kernel cannot probe the instruction at this offset (ENOTSUPP, \
                           error 524: its instruction decoder refuses that instruction, or the \
                           offset is not the start of one); this function cannot be traced in \
                           this build, `ckb-probe symbols` shows the instruction there"
            .to_string(),
        _ => e.to_string(),
    }
}

/// A verifier log on one line: its last lines, which name the rejected instruction and why
/// (the whole log runs to thousands of lines). Empty for an empty log.
pub(crate) fn verifier_tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .trim_end_matches('\0')
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(6)..];
    format!("verifier: … {}", tail.join(" / "))
}

/// The RocksDB layer's slow-event ring buffer.
pub const SLOW_EVENTS_MAP: &str = "ROCKS_EVENTS";

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(n).unwrap_or(4096)
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones use memcg and ignore it.
/// Failing to raise it (no CAP_SYS_RESOURCE, as in some sandboxes) is therefore only logged.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_logs_are_cut_to_their_last_lines() {
        let mut log: String = (1..=100).map(|i| format!("{i}: r0 = 0\n")).collect();
        log.push_str("R1 invalid mem access 'scalar'\n\0\0\0");
        assert_eq!(
            verifier_tail(&log),
            "verifier: … 96: r0 = 0 / 97: r0 = 0 / 98: r0 = 0 / 99: r0 = 0 / 100: r0 = 0 / \
             R1 invalid mem access 'scalar'"
        );
        assert_eq!(verifier_tail("\0\0"), "");

        // Aya's load errors carry the log after "Verifier output:".
        let e = std::io::Error::other(format!("`BPF_PROG_LOAD` failed\nVerifier output:\n{log}"));
        let line = error_chain(&e);
        assert!(
            line.starts_with("`BPF_PROG_LOAD` failed verifier: … 96: r0 = 0 / "),
            "{line}"
        );
        assert!(line.ends_with("R1 invalid mem access 'scalar'"), "{line}");
    }

    #[test]
    fn enotsupp_is_said_in_words() {
        let e = ProbeError::Multi {
            name: "delete_exit".into(),
            source: uprobe_multi::MultiError::Link(std::io::Error::from_raw_os_error(ENOTSUPP)),
        };
        let line = error_chain(&e);
        assert!(
            line.starts_with(
                "eBPF program delete_exit could not be attached through a uprobe_multi link: \
                 creating the uprobe_multi link failed: the kernel cannot probe the instruction"
            ),
            "{line}"
        );
        assert!(
            line.contains("ENOTSUPP") && !line.contains("Unknown error"),
            "{line}"
        );
        // Other errnos keep the C library's words.
        let e = std::io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(cause_text(&e), e.to_string());
    }
}
