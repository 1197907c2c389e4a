//! The process being traced: finding the CKB node, its executable and the objects it maps.
//!
//! Everything is read from `/proc`. Paths are kept twice: as the target sees them (for
//! display) and as a path that opens the same file from our mount namespace (for reading
//! and for attaching uprobes), because the node may run in a container or may have been
//! upgraded in place (its executable then shows as `... (deleted)`).

use std::{
    collections::HashSet,
    fs, io,
    path::{Path, PathBuf},
};

/// Why a target process could not be found or inspected. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "no process with PID {pid}: it is not running (or has exited); check the PID with `pgrep -a ckb`"
    )]
    NoSuchProcess { pid: u32 },
    #[error(
        "cannot inspect process {pid} through /proc/{pid}: run ckb-probe as root (reading another process's executable and maps needs ptrace access); for a node in a container, run from the host"
    )]
    NotAccessible {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error(
        "process {pid} has no executable (a kernel thread or a zombie): pass the PID of the running CKB node"
    )]
    NoExecutable { pid: u32 },
    #[error(
        "no running CKB node found (no process `ckb` with `run` in its arguments): start the node, or pass --pid PID"
    )]
    NoCkbNode,
    #[error("several CKB nodes are running: {}; use --pid to pick one", list_candidates(.candidates))]
    SeveralCkbNodes { candidates: Vec<(u32, String)> },
}

fn list_candidates(c: &[(u32, String)]) -> String {
    c.iter()
        .map(|(pid, cmd)| format!("PID {pid} `{cmd}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A running process, as far as tracing it is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
    pub cmdline: Vec<String>,
    /// `readlink /proc/PID/exe`: the path as the target sees it (may end in ` (deleted)`).
    pub exe: PathBuf,
    /// Opens the same inode from our namespace, even when `exe` was replaced or deleted.
    pub exe_open: PathBuf,
    /// File-backed executable mappings, in address order, without duplicates.
    pub mapped: Vec<MappedObject>,
}

/// A file mapped executable into the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedObject {
    /// The path as written in `/proc/PID/maps`.
    pub path: PathBuf,
    /// A path to open it from our mount namespace.
    pub open_path: PathBuf,
}

impl MappedObject {
    /// File name without a trailing ` (deleted)`.
    pub fn file_name(&self) -> Option<String> {
        let name = self.path.file_name()?.to_string_lossy();
        Some(strip_deleted(&name).to_string())
    }
}

impl Process {
    /// The command line joined with spaces, for messages.
    pub fn command(&self) -> String {
        if self.cmdline.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.cmdline.join(" ")
        }
    }
}

const DELETED: &str = " (deleted)";

fn strip_deleted(s: &str) -> &str {
    s.strip_suffix(DELETED).unwrap_or(s)
}

fn proc_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// Maps an I/O error on a `/proc/PID/...` file to the matching [`TargetError`].
fn proc_error(pid: u32, e: io::Error) -> TargetError {
    match e.kind() {
        io::ErrorKind::NotFound => TargetError::NoSuchProcess { pid },
        io::ErrorKind::PermissionDenied => TargetError::NotAccessible { pid, source: e },
        // ESRCH shows up when the process exits between two reads.
        _ if e.raw_os_error() == Some(libc::ESRCH) => TargetError::NoSuchProcess { pid },
        _ => TargetError::NotAccessible { pid, source: e },
    }
}

/// Reads what tracing needs to know about process `pid`.
pub fn process(pid: u32) -> Result<Process, TargetError> {
    // PID 0 is not a process, and /proc/0 does not exist anyway; be explicit.
    if pid == 0 {
        return Err(TargetError::NoSuchProcess { pid });
    }
    let dir = proc_dir(pid);
    let stat = fs::read_to_string(dir.join("stat")).map_err(|e| proc_error(pid, e))?;
    if matches!(stat_state(&stat), Some('Z' | 'X')) {
        return Err(TargetError::NoExecutable { pid });
    }
    let comm = fs::read_to_string(dir.join("comm"))
        .map_err(|e| proc_error(pid, e))?
        .trim_end_matches('\n')
        .to_string();
    let cmdline = read_cmdline(pid).map_err(|e| proc_error(pid, e))?;
    let exe = match fs::read_link(dir.join("exe")) {
        Ok(p) => p,
        // Kernel threads have no exe link: readlink fails with ENOENT while /proc/PID exists.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(if dir.exists() {
                TargetError::NoExecutable { pid }
            } else {
                TargetError::NoSuchProcess { pid }
            });
        }
        Err(e) => return Err(proc_error(pid, e)),
    };
    let maps = fs::read_to_string(dir.join("maps")).map_err(|e| proc_error(pid, e))?;
    Ok(Process {
        pid,
        comm,
        cmdline,
        exe,
        exe_open: dir.join("exe"),
        mapped: parse_maps(pid, &maps),
    })
}

fn read_cmdline(pid: u32) -> io::Result<Vec<String>> {
    let raw = fs::read(proc_dir(pid).join("cmdline"))?;
    Ok(raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// The state letter of `/proc/PID/stat` (after the parenthesised comm, which may hold spaces
/// and parentheses itself).
fn stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// File-backed executable mappings of `/proc/PID/maps`, first occurrence order.
fn parse_maps(pid: u32, maps: &str) -> Vec<MappedObject> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname; the pathname may contain spaces.
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("").trim_start();
        if !perms.contains('x') || !path.starts_with('/') {
            continue;
        }
        if !seen.insert(path.to_string()) {
            continue;
        }
        let open_path = if path.ends_with(DELETED) {
            // The name no longer leads to the mapped inode; map_files does (root only).
            PathBuf::from(format!("/proc/{pid}/map_files/{range}"))
        } else {
            // Through the target's root, so a node in another mount namespace still works.
            proc_dir(pid)
                .join("root")
                .join(path.trim_start_matches('/'))
        };
        out.push(MappedObject {
            path: PathBuf::from(path),
            open_path,
        });
    }
    out
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match fs::read_to_string(proc_dir(pid).join("stat")) {
        Ok(stat) => !matches!(stat_state(&stat), Some('Z' | 'X') | None),
        Err(_) => false,
    }
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether a command line and executable name look like a CKB node (`ckb ... run ...`).
fn looks_like_ckb_node(exe_name: Option<&str>, comm: &str, cmdline: &[String]) -> bool {
    let is_ckb = exe_name.map(strip_deleted) == Some("ckb") || comm == "ckb";
    // `run` may come after global options (`ckb -C DIR run`), but not as argv[0].
    is_ckb && cmdline.iter().skip(1).any(|a| a == "run")
}

/// Processes that look like a CKB node: executable (or comm) `ckb` with `run` in argv.
pub fn find_ckb_nodes() -> Vec<Process> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let dir = proc_dir(pid);
            let comm = fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let exe = fs::read_link(dir.join("exe")).ok();
            let exe_name = exe
                .as_deref()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned());
            let cmdline = read_cmdline(pid).unwrap_or_default();
            looks_like_ckb_node(exe_name.as_deref(), comm.trim_end(), &cmdline)
        })
        .filter_map(|pid| process(pid).ok())
        .collect()
}

/// `-C DIR` / `--config-dir DIR` of a `ckb` command line.
fn ckb_data_dir(cmdline: &[String]) -> Option<&str> {
    let mut it = cmdline.iter();
    while let Some(a) = it.next() {
        if a == "-C" || a == "--config-dir" {
            return it.next().map(String::as_str);
        }
        if let Some(d) = a.strip_prefix("--config-dir=") {
            return Some(d);
        }
    }
    None
}

/// The process that took over from `old` after it exited: for a `ckb … run -C DIR`, a node with
/// the same data directory (restarted, or upgraded to another binary anywhere); for anything
/// else, a process running the same executable path. Among several, the one with `old`'s
/// command line, else the newest.
pub fn successor(old: &Process) -> Option<Process> {
    let me = std::process::id();
    let old_exe = old.exe.to_string_lossy();
    let old_exe = strip_deleted(&old_exe);
    let old_dir = ckb_data_dir(&old.cmdline);
    let old_name = Path::new(old_exe)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let old_is_node = looks_like_ckb_node(old_name.as_deref(), &old.comm, &old.cmdline);
    let mut found: Vec<Process> = all_pids()
        .into_iter()
        .rev()
        .filter(|&pid| pid != me && pid != old.pid)
        .filter_map(|pid| {
            let exe = fs::read_link(proc_dir(pid).join("exe")).ok()?;
            let exe = exe.to_string_lossy();
            let cmdline = read_cmdline(pid).unwrap_or_default();
            let comm = fs::read_to_string(proc_dir(pid).join("comm")).unwrap_or_default();
            let name = Path::new(strip_deleted(&exe))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let is_node = looks_like_ckb_node(name.as_deref(), comm.trim_end(), &cmdline);
            // `ckb miner` runs the node's binary too: a node's successor is a node.
            if old_is_node && !is_node {
                return None;
            }
            let same_dir = is_node && ckb_data_dir(&cmdline) == old_dir;
            // Several nodes may run one binary: a node with a data directory is followed by
            // that directory (an upgrade may also move the binary), anything else by its path.
            let follows = match old_dir {
                Some(_) if old_is_node => same_dir,
                _ => strip_deleted(&exe) == old_exe,
            };
            follows.then_some(pid)
        })
        .filter_map(|pid| process(pid).ok())
        .collect();
    let same_cmdline = found.iter().position(|p| p.cmdline == old.cmdline);
    match same_cmdline {
        Some(i) => Some(found.swap_remove(i)),
        None => found.into_iter().next(),
    }
}

/// The only running CKB node, or an error that lists the candidates.
pub fn pick_ckb_node() -> Result<Process, TargetError> {
    let mut nodes = find_ckb_nodes();
    match nodes.len() {
        0 => Err(TargetError::NoCkbNode),
        1 => Ok(nodes.remove(0)),
        _ => Err(TargetError::SeveralCkbNodes {
            candidates: nodes.iter().map(|p| (p.pid, p.command())).collect(),
        }),
    }
}

/// `(tid, comm)` of every thread of `pid`, by tid; empty when the process is gone.
pub fn threads(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = fs::read_dir(proc_dir(pid).join("task")) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            // A thread may exit between listing and reading: skip it.
            let comm = fs::read_to_string(e.path().join("comm")).ok()?;
            Some((tid, comm.trim_end_matches('\n').to_string()))
        })
        .collect();
    out.sort_unstable_by_key(|t| t.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_of_ckb_command_lines() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(ckb_data_dir(&v("ckb run -C /data/ckb")), Some("/data/ckb"));
        assert_eq!(ckb_data_dir(&v("ckb -C /d run")), Some("/d"));
        assert_eq!(ckb_data_dir(&v("ckb run --config-dir=/x")), Some("/x"));
        assert_eq!(ckb_data_dir(&v("ckb run")), None);
    }

    #[test]
    fn stat_state_handles_odd_comm() {
        assert_eq!(stat_state("12 (a) b) (c) S 1 2 3"), Some('S'));
        assert_eq!(stat_state("12 (ckb) Z 1"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn maps_keeps_executable_files_once() {
        let maps = "\
55d0-55d1 r--p 00000000 08:01 10 /usr/bin/ckb
55d1-55d2 r-xp 00001000 08:01 10 /usr/bin/ckb
55d3-55d4 r-xp 00003000 08:01 10 /usr/bin/ckb
7f00-7f01 r-xp 00000000 08:01 11 /usr/lib/librocksdb.so.7.8
7f02-7f03 r-xp 00000000 00:00 0 [vdso]
7f04-7f05 rw-p 00000000 00:00 0
7f06-7f07 r-xp 00000000 08:01 12 /opt/my dir/ckb (deleted)
";
        let m = parse_maps(42, maps);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].path, Path::new("/usr/bin/ckb"));
        assert_eq!(m[0].open_path, Path::new("/proc/42/root/usr/bin/ckb"));
        assert_eq!(
            m[1].file_name().as_deref(),
            Some("librocksdb.so.7.8"),
            "{m:?}"
        );
        assert_eq!(m[2].path, Path::new("/opt/my dir/ckb (deleted)"));
        assert_eq!(m[2].open_path, Path::new("/proc/42/map_files/7f06-7f07"));
        assert_eq!(m[2].file_name().as_deref(), Some("ckb"));
    }

    #[test]
    fn ckb_node_detection() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(looks_like_ckb_node(
            Some("ckb"),
            "ckb",
            &args("ckb run -C /d")
        ));
        assert!(looks_like_ckb_node(
            Some("ckb"),
            "x",
            &args("ckb -C /d run")
        ));
        assert!(looks_like_ckb_node(
            Some("ckb (deleted)"),
            "x",
            &args("/o/ckb run")
        ));
        assert!(!looks_like_ckb_node(
            Some("ckb"),
            "ckb",
            &args("ckb miner -C /d")
        ));
        assert!(!looks_like_ckb_node(
            Some("bash"),
            "bash",
            &args("bash run")
        ));
    }

    #[test]
    fn self_process() {
        let p = process(std::process::id()).expect("own process");
        assert!(!p.comm.is_empty());
        assert!(p.mapped.iter().any(|m| m.open_path.exists()));
        assert!(is_alive(p.pid));
        assert!(!threads(p.pid).is_empty());
    }

    #[test]
    fn missing_process() {
        assert!(matches!(
            process(999_999_999),
            Err(TargetError::NoSuchProcess { pid: 999_999_999 })
        ));
        assert!(!is_alive(999_999_999));
        assert!(!is_alive(0));
    }
}
