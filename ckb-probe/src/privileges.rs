//! Dropping privileges once the probes are attached: loading and attaching need CAP_BPF and
//! CAP_PERFMON (or root's CAP_SYS_ADMIN), but reading maps and the ring buffer goes through file
//! descriptors ckb-probe already holds, and detaching is closing them. Keeping root's full
//! capability set for hours of monitoring would only widen what a bug could do.

use std::io;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// CAP_SYS_PTRACE: reading another process's /proc/PID/fd (the net layer re-reads the
/// target's listening sockets every interval).
pub const CAP_SYS_PTRACE: u32 = 19;

/// Clears every capability of this process except `keep` (all threads must not have been
/// spawned yet, or they keep theirs: call it from the thread that did the attaching) and sets
/// no_new_privs, so nothing executed later can regain them.
pub fn drop_all_but(keep: &[u32]) -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let d = &mut data[(cap / 32) as usize];
        d.effective |= 1 << (cap % 32);
        d.permitted |= 1 << (cap % 32);
    }
    // SAFETY: capset with a valid v3 header and two data structs, as the ABI requires.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clears every capability: see [`drop_all_but`].
pub fn drop_all() -> io::Result<()> {
    drop_all_but(&[])
}
