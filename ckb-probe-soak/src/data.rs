//! What a soak run left in its directory (see `scripts/soak.sh`), read back: ckb-probe's NDJSON
//! through the project's own parser (`ckb_probe::view::ndjson::parse`), the /proc samples, the
//! control windows, the kernel log records and the targets' own counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ckb_probe::model::{Kind, Report};
use serde_json::Value;

/// `key=value` lines of `env.txt` (machine, versions, the command, the run's parameters).
#[derive(Clone, Debug, Default)]
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    pub fn text(&self, key: &str) -> &str {
        self.get(key).unwrap_or("unknown")
    }
}

/// One row of `samples.csv`: a process's cumulative CPU ticks and its RSS at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub t_ms: u64,
    /// `<kind>.<role>`: `testbed.probe`, `testbed.subject`, `testbed.control`,
    /// `testbed.control_probe`, and the same for `ckb`.
    pub role: String,
    pub pid: u32,
    pub utime: u64,
    pub stime: u64,
    pub rss_kb: u64,
    pub threads: u32,
}

/// One row of `machine.csv`: the whole machine's load, to judge the noise of a shared host.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineSample {
    pub t_ms: u64,
    pub load1: f64,
    pub busy_ticks: u64,
    pub total_ticks: u64,
}

/// A control-window event of `phases.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseEvent {
    /// A control ckb-probe was launched.
    Start,
    /// It has attached.
    On,
    /// It has exited (probes detached).
    Off,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub t_ms: u64,
    pub kind: String,
    pub event: PhaseEvent,
}

/// A kernel log record that appeared during the run (`/dev/kmsg`: priority, sequence, text).
#[derive(Clone, Debug, PartialEq)]
pub struct KmsgRecord {
    pub t_ms: u64,
    pub priority: u8,
    pub seq: u64,
    pub text: String,
}

/// One second of the testbed's own counters (its `--verbose` line): calls per category.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestbedSecond {
    /// Seconds since the measured phase started (the line's `t=`).
    pub t: u64,
    pub iterations: u64,
    /// Category (`get`, `put`, `delete`, `commit`, `write`, `iter`, `compact`) to
    /// (calls, mean latency in µs).
    pub cats: BTreeMap<String, (u64, f64)>,
    pub storm: bool,
}

/// The node's tip (and its control peer's) at one moment (`ckb/tips.csv`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tip {
    pub t_ms: u64,
    pub node: Option<u64>,
    pub control: Option<u64>,
}

/// Everything about one target kind (`testbed` or `ckb`).
#[derive(Debug)]
pub struct KindRun {
    pub name: String,
    /// The subject's ckb-probe reports, interval reports in order.
    pub intervals: Vec<Report>,
    /// Its final summary report (absent if the probe died).
    pub summary: Option<Report>,
    /// NDJSON lines that did not parse (must be none).
    pub bad_lines: Vec<String>,
    pub probe_log: String,
    pub probe_exit: Option<i32>,
    /// The testbed's ground truth (testbed only).
    pub truth: Option<Value>,
    pub control_truth: Option<Value>,
    pub testbed_seconds: Vec<TestbedSecond>,
    /// Wall-clock start of the testbed's measured phase.
    pub measured_start_ms: Option<u64>,
    pub tips: Vec<Tip>,
    /// Reports of the alternating control probes (one Vec per window).
    pub control_runs: Vec<Vec<Report>>,
}

/// A whole soak run directory.
#[derive(Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub env: Env,
    pub samples: Vec<Sample>,
    pub machine: Vec<MachineSample>,
    pub phases: Vec<Phase>,
    pub kmsg: Vec<KmsgRecord>,
    pub kinds: Vec<KindRun>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn read_opt(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

pub fn parse_env(text: &str) -> Env {
    Env(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Rows of a CSV file with a header line; `f` gets the fields of each row.
fn csv_rows<T>(text: &str, mut f: impl FnMut(&[&str]) -> Option<T>) -> Vec<T> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| f(&l.split(',').collect::<Vec<_>>()))
        .collect()
}

pub fn parse_samples(text: &str) -> Vec<Sample> {
    csv_rows(text, |c| {
        Some(Sample {
            t_ms: c.first()?.parse().ok()?,
            role: c.get(1)?.to_string(),
            pid: c.get(2)?.parse().ok()?,
            utime: c.get(3)?.parse().ok()?,
            stime: c.get(4)?.parse().ok()?,
            rss_kb: c.get(5)?.parse().ok()?,
            threads: c.get(6)?.parse().ok()?,
        })
    })
}

pub fn parse_machine(text: &str) -> Vec<MachineSample> {
    csv_rows(text, |c| {
        Some(MachineSample {
            t_ms: c.first()?.parse().ok()?,
            load1: c.get(1)?.parse().ok()?,
            busy_ticks: c.get(2)?.parse().ok()?,
            total_ticks: c.get(3)?.parse().ok()?,
        })
    })
}

pub fn parse_phases(text: &str) -> Vec<Phase> {
    csv_rows(text, |c| {
        Some(Phase {
            t_ms: c.first()?.parse().ok()?,
            kind: c.get(1)?.to_string(),
            event: match *c.get(2)? {
                "start" => PhaseEvent::Start,
                "on" => PhaseEvent::On,
                "off" => PhaseEvent::Off,
                _ => return None,
            },
        })
    })
}

/// `kmsg.log`: `<epoch_ms>\t<prio>,<seq>,<usecs>,<flags>;<text>` (continuation lines, which start
/// with a space, are appended to their record).
pub fn parse_kmsg(text: &str) -> Vec<KmsgRecord> {
    let mut out: Vec<KmsgRecord> = Vec::new();
    for line in text.lines() {
        let Some((t, rec)) = line.split_once('\t') else {
            if let Some(last) = out.last_mut() {
                last.text.push(' ');
                last.text.push_str(line.trim());
            }
            continue;
        };
        let Some((head, msg)) = rec.split_once(';') else {
            continue;
        };
        let mut h = head.split(',');
        let prio: u64 = h.next().and_then(|p| p.parse().ok()).unwrap_or(6);
        let seq = h.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push(KmsgRecord {
            t_ms: t.parse().unwrap_or(0),
            // The syslog priority is the low 3 bits; the facility sits above them.
            priority: (prio & 7) as u8,
            seq,
            text: msg.to_string(),
        });
    }
    out
}

/// The testbed's `--verbose` lines:
/// `[testbed] t= 12s iters=   400 get=7.6us/2922 put=4.3us/2968 ... STORM`.
pub fn parse_testbed_log(text: &str) -> Vec<TestbedSecond> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("[testbed] t=") else {
            continue;
        };
        let mut sec = TestbedSecond::default();
        let mut words = rest.split_whitespace();
        let Some(t) = words
            .next()
            .and_then(|w| w.trim_end_matches('s').parse().ok())
        else {
            continue;
        };
        sec.t = t;
        let mut rest: Vec<&str> = words.collect();
        // "iters=" may be followed by spaces before the number.
        if let Some(i) = rest.iter().position(|w| w.starts_with("iters=")) {
            let v = rest[i].trim_start_matches("iters=");
            sec.iterations = if v.is_empty() {
                rest.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(0)
            } else {
                v.parse().unwrap_or(0)
            };
            rest.retain(|w| !w.starts_with("iters="));
        }
        for w in rest {
            if w == "STORM" {
                sec.storm = true;
            } else if let Some((cat, v)) = w.split_once('=')
                && let Some((lat, n)) = v.split_once("us/")
                && let (Ok(lat), Ok(n)) = (lat.parse::<f64>(), n.parse::<u64>())
            {
                sec.cats.insert(cat.to_string(), (n, lat));
            }
        }
        out.push(sec);
    }
    out
}

pub fn parse_tips(text: &str) -> Vec<Tip> {
    csv_rows(text, |c| {
        Some(Tip {
            t_ms: c.first()?.parse().ok()?,
            node: c.get(1).and_then(|v| v.parse().ok()),
            control: c.get(2).and_then(|v| v.parse().ok()),
        })
    })
}

/// Parses NDJSON into interval reports and the summary, with the project's own reader.
pub fn parse_ndjson(text: &str) -> (Vec<Report>, Option<Report>, Vec<String>) {
    let mut intervals = Vec::new();
    let mut summary = None;
    let mut bad = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match ckb_probe::view::ndjson::parse(line) {
            Ok(r) if r.header.kind == Kind::Summary => summary = Some(r),
            Ok(r) => intervals.push(r),
            Err(e) => bad.push(format!("{e}: {}", &line[..line.len().min(120)])),
        }
    }
    (intervals, summary, bad)
}

fn load_kind(root: &Path, name: &str) -> Result<Option<KindRun>> {
    let dir = root.join(name);
    let ndjson = dir.join("probe.ndjson");
    if !ndjson.exists() {
        return Ok(None);
    }
    let (intervals, summary, bad_lines) = parse_ndjson(&read(&ndjson)?);
    let json = |f: &str| -> Result<Option<Value>> {
        match read_opt(&dir.join(f)) {
            Some(t) => Ok(Some(
                serde_json::from_str(&t).with_context(|| format!("parsing {name}/{f}"))?,
            )),
            None => Ok(None),
        }
    };
    let measured_start_ms = read_opt(&dir.join("start.txt")).and_then(|t| {
        parse_env(&t)
            .get("measured_start_ms")
            .and_then(|v| v.parse().ok())
    });
    let mut control_files: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            let k = n
                .strip_prefix("control-")?
                .strip_suffix(".ndjson")?
                .parse()
                .ok()?;
            Some((k, e.path()))
        })
        .collect();
    control_files.sort();
    let mut control_runs = Vec::new();
    for (_, p) in control_files {
        let (mut iv, summary, _) = parse_ndjson(&read(&p)?);
        iv.extend(summary);
        control_runs.push(iv);
    }
    Ok(Some(KindRun {
        name: name.to_string(),
        intervals,
        summary,
        bad_lines,
        probe_log: read_opt(&dir.join("probe.log")).unwrap_or_default(),
        probe_exit: read_opt(&dir.join("probe.exit")).and_then(|t| t.trim().parse().ok()),
        truth: json("truth.json")?,
        control_truth: json("control-truth.json")?,
        testbed_seconds: read_opt(&dir.join("testbed.log"))
            .map(|t| parse_testbed_log(&t))
            .unwrap_or_default(),
        measured_start_ms,
        tips: read_opt(&dir.join("tips.csv"))
            .map(|t| parse_tips(&t))
            .unwrap_or_default(),
        control_runs,
    }))
}

impl Run {
    pub fn load(dir: &Path) -> Result<Run> {
        let env = parse_env(&read(&dir.join("env.txt"))?);
        let mut kinds = Vec::new();
        for name in ["testbed", "ckb"] {
            if let Some(k) = load_kind(dir, name)? {
                kinds.push(k);
            }
        }
        if kinds.is_empty() {
            bail!(
                "{} holds no testbed/probe.ndjson nor ckb/probe.ndjson: not a soak run directory",
                dir.display()
            );
        }
        Ok(Run {
            dir: dir.to_path_buf(),
            samples: parse_samples(&read(&dir.join("samples.csv"))?),
            machine: read_opt(&dir.join("machine.csv"))
                .map(|t| parse_machine(&t))
                .unwrap_or_default(),
            phases: read_opt(&dir.join("phases.csv"))
                .map(|t| parse_phases(&t))
                .unwrap_or_default(),
            kmsg: read_opt(&dir.join("kmsg.log"))
                .map(|t| parse_kmsg(&t))
                .unwrap_or_default(),
            env,
            kinds,
        })
    }
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp as ckb-probe writes them
/// (`2026-12-01T03:24:10Z`, optionally with fractional seconds).
pub fn epoch_of(ts: &str) -> Option<f64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|v| v.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + mi * 60) as f64 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_of_rfc3339() {
        assert_eq!(epoch_of("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(epoch_of("2026-12-01T03:24:10Z"), Some(1_796_095_450.0));
        assert_eq!(epoch_of("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(epoch_of("garbage"), None);
    }

    #[test]
    fn testbed_lines() {
        let s = parse_testbed_log(
            "[testbed] t=  5s iters=   396 get=7.6us/2922 put=4.3us/2968 iter=12.7us/2772\n\
             noise\n[testbed] t=1234s iters=400 write=17.7us/444 compact=900.0us/3 STORM\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].t, s[0].iterations), (5, 396));
        assert_eq!(s[0].cats["get"], (2922, 7.6));
        assert!(!s[0].storm);
        assert_eq!((s[1].t, s[1].iterations), (1234, 400));
        assert_eq!(s[1].cats["compact"].0, 3);
        assert!(s[1].storm);
    }

    #[test]
    fn kmsg_records_and_csvs() {
        let k = parse_kmsg(
            "100\t4,57,123,-;WARNING: CPU: 1 PID: 2 at kernel/bpf/x.c\n continued\n200\t6,58,124,-;ok\n",
        );
        assert_eq!(k.len(), 2);
        assert_eq!((k[0].priority, k[0].seq), (4, 57));
        assert!(k[0].text.ends_with("continued"));
        let s = parse_samples(
            "epoch_ms,role,pid,utime,stime,rss_kb,threads\n1,a.probe,2,3,4,5,6\nbad\n",
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].rss_kb, 5);
        let p = parse_phases("h\n1,testbed,start\n2,testbed,on\n3,testbed,off\n4,x,?\n");
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].event, PhaseEvent::On);
    }
}
