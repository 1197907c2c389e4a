//! Dropping privileges once the probes are attached: loading and attaching need CAP_BPF and
//! CAP_PERFMON (or root's CAP_SYS_ADMIN), but reading maps and the ring buffer goes through file
//! descriptors ckb-probe already holds, and detaching is closing them. Keeping root's full
//! capability set for hours of monitoring would only widen what a bug could do.

use std::io;

pub use caps::Capability;
use caps::{CapSet, CapsHashSet};

/// CAP_SYS_PTRACE: reading another process's /proc/PID/fd (the net layer re-reads the
/// target's listening sockets every interval).
pub const CAP_SYS_PTRACE: Capability = Capability::CAP_SYS_PTRACE;

/// Clears every capability of this process except `keep` (all threads must not have been
/// spawned yet, or they keep theirs: call it from the thread that did the attaching) and sets
/// no_new_privs, so nothing executed later can regain them.
pub fn drop_all_but(keep: &[Capability]) -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let keep: CapsHashSet = keep.iter().copied().collect();
    // Effective before permitted: the kernel refuses an effective set larger than the permitted
    // one, so narrowing in this order never passes through an invalid state.
    caps::set(None, CapSet::Effective, &keep).map_err(io::Error::other)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(io::Error::other)?;
    // Also empties the ambient set, which cannot exceed the inheritable one.
    caps::clear(None, CapSet::Inheritable).map_err(io::Error::other)?;
    Ok(())
}

/// Clears every capability: see [`drop_all_but`].
pub fn drop_all() -> io::Result<()> {
    drop_all_but(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(CapInh, CapPrm, CapEff, CapAmb, NoNewPrivs)` of the calling thread, as the kernel
    /// reports them (capabilities are per thread).
    fn thread_status() -> (u64, u64, u64, u64, u64) {
        let s = std::fs::read_to_string("/proc/thread-self/status").expect("status");
        let field = |name: &str, radix: u32| {
            let line = s
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {s}"));
            u64::from_str_radix(line.trim(), radix).expect("number")
        };
        (
            field("CapInh:", 16),
            field("CapPrm:", 16),
            field("CapEff:", 16),
            field("CapAmb:", 16),
            field("NoNewPrivs:", 10),
        )
    }

    // Each check runs on a thread of its own: dropping is per thread, so the test harness and
    // the other tests keep their capabilities.
    fn on_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("thread")
    }

    #[test]
    fn drop_all_leaves_nothing() {
        let (before, after, rc) = on_own_thread(|| {
            let before = thread_status();
            let rc = drop_all();
            (before, thread_status(), rc)
        });
        rc.expect("drop_all");
        assert_eq!(after, (0, 0, 0, 0, 1), "before: {before:x?}");
    }

    #[test]
    fn drop_all_but_keeps_exactly_what_is_asked() {
        let ptrace = 1u64 << CAP_SYS_PTRACE.index();
        let (before, after, rc) = on_own_thread(move || {
            let before = thread_status();
            // Only what is held can be kept: ask for CAP_SYS_PTRACE when this thread has it.
            let keep: &[Capability] = if before.1 & ptrace != 0 {
                &[CAP_SYS_PTRACE]
            } else {
                &[]
            };
            let rc = drop_all_but(keep);
            (before, thread_status(), rc)
        });
        rc.expect("drop_all_but");
        let kept = before.1 & ptrace;
        assert_eq!(after, (0, kept, kept, 0, 1), "before: {before:x?}");
    }

    #[test]
    fn keeping_a_capability_not_held_fails() {
        let rc = on_own_thread(|| {
            drop_all().expect("drop_all");
            drop_all_but(&[CAP_SYS_PTRACE])
        });
        assert!(rc.is_err());
    }
}
