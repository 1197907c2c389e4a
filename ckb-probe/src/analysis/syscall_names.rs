//! System call names by number, for x86-64 and aarch64, from the `syscalls` crate (its tables
//! are generated from the kernel's own, per architecture; update the crate when Linux adds
//! system calls).

use std::borrow::Cow;

use syscalls::{aarch64, x86_64};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arch {
    X86_64,
    Aarch64,
}

/// The syscall table of one architecture.
#[derive(Clone, Copy, Debug)]
pub struct SyscallTable {
    pub arch: &'static str,
    which: Arch,
}

/// `syscalls` 0.8 builds its aarch64 table from the generic `scripts/syscall.tbl` without
/// keeping to the 64-bit ABI: it lists the `_time64` calls of 32-bit targets (403..=423), which
/// arm64 kernels do not have, and names 79 by the generic alias `fstatat` where arm64's kernel,
/// glibc and strace say `newfstatat`.
const AARCH64_TIME32_ONLY: std::ops::RangeInclusive<u32> = 403..=423;
const AARCH64_NEWFSTATAT: u32 = 79;

impl SyscallTable {
    pub const X86_64: SyscallTable = SyscallTable {
        arch: "x86_64",
        which: Arch::X86_64,
    };
    pub const AARCH64: SyscallTable = SyscallTable {
        arch: "aarch64",
        which: Arch::Aarch64,
    };

    /// The table of the architecture ckb-probe runs on (the traced kernel's), if it has one.
    pub fn host() -> Option<SyscallTable> {
        if cfg!(target_arch = "x86_64") {
            Some(Self::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Self::AARCH64)
        } else {
            None
        }
    }

    /// The name of `nr`, or `sys_<nr>` for a number this table does not know (a newer kernel,
    /// or an architecture without a table).
    pub fn name(table: Option<&SyscallTable>, nr: u32) -> Cow<'static, str> {
        match table.and_then(|t| t.lookup(nr)) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("sys_{nr}")),
        }
    }

    /// The number of `name`, if this architecture has that system call.
    pub fn nr(&self, name: &str) -> Option<u32> {
        match self.which {
            Arch::X86_64 => name.parse::<x86_64::Sysno>().ok().map(|s| s.id() as u32),
            Arch::Aarch64 => match name {
                "newfstatat" => Some(AARCH64_NEWFSTATAT),
                "fstatat" => None,
                _ => name
                    .parse::<aarch64::Sysno>()
                    .ok()
                    .map(|s| s.id() as u32)
                    .filter(|nr| !AARCH64_TIME32_ONLY.contains(nr)),
            },
        }
    }

    /// `(nr, name)` of every assigned number.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &'static str)> + '_ {
        // By number rather than `Sysno::iter`, which stops before the last entry of the table.
        let last = match self.which {
            Arch::X86_64 => x86_64::Sysno::last().id(),
            Arch::Aarch64 => aarch64::Sysno::last().id(),
        } as u32;
        (0..=last).filter_map(|nr| Some((nr, self.lookup(nr)?)))
    }

    fn lookup(&self, nr: u32) -> Option<&'static str> {
        let nr_usize = usize::try_from(nr).ok()?;
        match self.which {
            Arch::X86_64 => x86_64::Sysno::new(nr_usize).map(|s| s.name()),
            Arch::Aarch64 if AARCH64_TIME32_ONLY.contains(&nr) => None,
            Arch::Aarch64 if nr == AARCH64_NEWFSTATAT => Some("newfstatat"),
            Arch::Aarch64 => aarch64::Sysno::new(nr_usize).map(|s| s.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        let x = SyscallTable::X86_64;
        for (nr, name) in [
            (0, "read"),
            (1, "write"),
            (17, "pread64"),
            (18, "pwrite64"),
            (35, "nanosleep"),
            (60, "exit"),
            (75, "fdatasync"),
            (110, "getppid"),
            (202, "futex"),
            (231, "exit_group"),
            (232, "epoll_wait"),
            (281, "epoll_pwait"),
            (334, "rseq"),
            (335, "uretprobe"),
            (435, "clone3"),
            (441, "epoll_pwait2"),
            (449, "futex_waitv"),
            (455, "futex_wait"),
            (469, "file_setattr"),
        ] {
            assert_eq!(SyscallTable::name(Some(&x), nr), name, "x86_64 {nr}");
            assert_eq!(x.nr(name), Some(nr), "x86_64 {name}");
        }
        let a = SyscallTable::AARCH64;
        for (nr, name) in [
            (22, "epoll_pwait"),
            (25, "fcntl"),
            (38, "renameat"),
            (63, "read"),
            (64, "write"),
            (67, "pread64"),
            (68, "pwrite64"),
            (79, "newfstatat"),
            (83, "fdatasync"),
            (93, "exit"),
            (94, "exit_group"),
            (98, "futex"),
            (101, "nanosleep"),
            (163, "getrlimit"),
            (173, "getppid"),
            (222, "mmap"),
            (435, "clone3"),
            (447, "memfd_secret"),
            (469, "file_setattr"),
        ] {
            assert_eq!(SyscallTable::name(Some(&a), nr), name, "aarch64 {nr}");
            assert_eq!(a.nr(name), Some(nr), "aarch64 {name}");
        }
        // aarch64 has no legacy calls.
        assert_eq!(a.nr("open"), None);
        assert_eq!(a.nr("epoll_wait"), None);
        // Nor the 32-bit targets' time64 calls the crate's generic table lists.
        assert_eq!(a.nr("clock_gettime64"), None);
        assert_eq!(a.nr("futex_time64"), None);
        assert_eq!(a.nr("fstatat"), None);
        assert_eq!(SyscallTable::name(Some(&a), 403), "sys_403");
        assert_eq!(SyscallTable::name(Some(&a), 422), "sys_422");
        assert_eq!(SyscallTable::name(Some(&a), 424), "pidfd_send_signal");
    }

    #[test]
    fn unknown_numbers_get_a_placeholder() {
        let x = SyscallTable::X86_64;
        assert_eq!(SyscallTable::name(Some(&x), 400), "sys_400");
        assert_eq!(SyscallTable::name(Some(&x), 100_000), "sys_100000");
        assert_eq!(SyscallTable::name(None, 1), "sys_1");
        assert_eq!(x.nr(""), None);
    }

    #[test]
    fn tables_are_complete_and_unique() {
        for t in [SyscallTable::X86_64, SyscallTable::AARCH64] {
            let names: Vec<&str> = t.iter().map(|(_, n)| n).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{}: duplicate names", t.arch);
            assert!(names.len() > 300, "{}: {} names", t.arch, names.len());
            // Every kind the kernel programs know maps to a number where the call exists.
            for (name, _) in ckb_probe_common::syscall::KINDS {
                let legacy = ["epoll_wait", "fork", "vfork"];
                if t.arch == "x86_64" || !legacy.contains(&name) {
                    assert!(t.nr(name).is_some(), "{}: {name}", t.arch);
                }
            }
        }
        assert_eq!(SyscallTable::X86_64.iter().count(), 383);
        assert_eq!(SyscallTable::AARCH64.iter().count(), 325);
        // The last number of each table is listed too.
        for t in [SyscallTable::X86_64, SyscallTable::AARCH64] {
            assert_eq!(t.iter().last(), Some((469, "file_setattr")), "{}", t.arch);
        }
    }
}
