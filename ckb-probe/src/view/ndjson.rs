//! NDJSON, the public line format: one object per report. The primary layer's fields sit at
//! the top level and the other layers' under their names, in the order they have always had
//! (type and timestamp first, operations in table order, column families in CKB column order);
//! fields added later come after them. [`parse`] reads a line back into the model, so a
//! recorded run can be rendered by every other view.

use std::collections::BTreeMap;

use ckb_probe_common::rocksdb::Op;
use serde::{
    Serialize, Serializer,
    de::DeserializeOwned,
    ser::{Error as _, SerializeMap},
};
use serde_json::{Map, Value};

use crate::{
    analysis::{
        net::NetInterval,
        rocksdb::{CfReport, OpReport, RocksInterval},
        syscall::SysInterval,
    },
    model::{
        End, Header, Kind, LayerName, Lifecycle, NetSection, Report, RocksSection, SysSection,
        de::{Name, intern},
        net::NetRun,
        rocksdb::{Attach, SlowLog},
    },
};

/// Options of the line format.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Cut the syscall list to this many entries (most time first).
    pub syscall_top: Option<usize>,
}

/// A followed target's exit or return as an NDJSON line (without the newline).
pub fn lifecycle_line(e: &Lifecycle) -> serde_json::Result<String> {
    serde_json::to_string(e)
}

/// A line of a recording.
#[derive(Clone, Debug)]
pub enum Parsed {
    Report(Box<Report>),
    Lifecycle(Lifecycle),
}

/// Reads any line of a recording: a report, or a followed target's exit or return.
pub fn parse_any(line: &str) -> Result<Parsed, ParseError> {
    #[derive(serde::Deserialize)]
    struct Kind0 {
        #[serde(rename = "type")]
        kind: String,
    }
    let k: Kind0 = serde_json::from_str(line).map_err(|e| ParseError(e.to_string()))?;
    match k.kind.as_str() {
        "target_exited" | "target_attached" => serde_json::from_str(line)
            .map(Parsed::Lifecycle)
            .map_err(|e| ParseError(e.to_string())),
        _ => parse(line).map(|r| Parsed::Report(Box::new(r))),
    }
}

/// One report as an NDJSON line (without the newline).
pub fn line(report: &Report, opts: Options) -> serde_json::Result<String> {
    serde_json::to_string(&Line { report, opts })
}

struct Line<'a> {
    report: &'a Report,
    opts: Options,
}

/// Operations in the table's order (GET, PUT, WRITE, ...), not alphabetical.
struct OpsInOrder<'a>(&'a BTreeMap<&'static str, OpReport>);

impl Serialize for OpsInOrder<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for op in Op::ALL {
            if let Some(r) = self.0.get(op.name()) {
                m.serialize_entry(op.name(), r)?;
            }
        }
        m.end()
    }
}

/// Column families by name, in the model's (CKB column) order.
struct Cfs<'a>(&'a [CfReport]);

impl Serialize for Cfs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Cf<'a> {
            column: Option<&'static str>,
            operations: &'a BTreeMap<&'static str, OpReport>,
        }
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for c in self.0 {
            m.serialize_entry(
                &c.name,
                &Cf {
                    column: c.column,
                    operations: &c.operations,
                },
            )?;
        }
        m.end()
    }
}

/// One secondary layer as a nested object.
struct Nested<'a> {
    line: &'a Line<'a>,
    layer: LayerName,
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.line.head(self.layer, &mut m)?;
        self.line.tail(self.layer, &mut m)?;
        m.end()
    }
}

/// The RocksDB layer's `mode` field in lightweight mode (absent otherwise).
const LIGHTWEIGHT: &str = "lightweight";

impl Line<'_> {
    fn summary(&self) -> bool {
        self.report.header.kind == Kind::Summary
    }

    /// A layer's established fields.
    fn head<M: SerializeMap>(&self, layer: LayerName, m: &mut M) -> Result<(), M::Error> {
        let missing = || M::Error::custom(format!("report has no {} section", layer.name()));
        match layer {
            LayerName::Rocksdb => {
                let r = self.report.rocksdb.as_ref().ok_or_else(missing)?;
                let st = &r.stats;
                // Only lightweight mode is said: lines of a full run stay as they always were.
                if st.entry_only {
                    m.serialize_entry("mode", LIGHTWEIGHT)?;
                }
                m.serialize_entry("operations", &OpsInOrder(&st.operations))?;
                m.serialize_entry("functions", &st.functions)?;
                m.serialize_entry("column_families", &Cfs(&st.column_families))?;
                m.serialize_entry("lost_events", &st.lost_events)?;
                m.serialize_entry("unpaired", &st.unpaired)?;
                m.serialize_entry("cf_unresolved", &st.cf_unresolved)?;
                m.serialize_entry("stats_full", &st.stats_full)?;
                if self.summary() {
                    let a = r.attach.clone().unwrap_or_default();
                    m.serialize_entry("attached", &a.attached)?;
                    m.serialize_entry("missing", &a.missing)?;
                    m.serialize_entry("single_stepped", &a.single_stepped)?;
                    // Absent from recordings made before the field existed: kept absent, so
                    // they read back and are written again byte for byte.
                    if !a.uprobes.is_empty() {
                        m.serialize_entry("uprobes", &a.uprobes)?;
                    }
                    m.serialize_entry("slow_ops_total", &r.slow.as_ref().map_or(0, |s| s.total))?;
                } else {
                    m.serialize_entry("anomalies", &r.anomalies)?;
                    if let Some(slow) = &r.slow {
                        m.serialize_entry("slow_ops_dropped", &slow.dropped)?;
                    }
                }
            }
            LayerName::Syscall => {
                let s = self.report.syscall.as_ref().ok_or_else(missing)?;
                let st = &s.stats;
                let top = self.opts.syscall_top.unwrap_or(usize::MAX);
                m.serialize_entry("interval_secs", &st.secs)?;
                m.serialize_entry("syscalls", &st.syscalls[..st.syscalls.len().min(top)])?;
                m.serialize_entry("roles", &st.roles)?;
                m.serialize_entry("derived", &st.derived)?;
                m.serialize_entry("threads", &st.threads)?;
                m.serialize_entry("unpaired", &st.unpaired)?;
                m.serialize_entry("threads_started", &st.threads_started)?;
                m.serialize_entry("hist_full", &st.hist_full)?;
                m.serialize_entry("stats_full", &st.stats_full)?;
                if self.summary() {
                    m.serialize_entry("arch", &s.arch)?;
                }
            }
            LayerName::Net => {
                let n = self.report.net.as_ref().ok_or_else(missing)?;
                let st = &n.stats;
                m.serialize_entry("path", &n.path)?;
                match (&n.run, self.summary()) {
                    (Some(run), true) => {
                        m.serialize_entry("programs", &run.programs)?;
                        m.serialize_entry("sock_layout", &run.sock_layout)?;
                        m.serialize_entry("listen_ports", &run.listen_ports)?;
                        m.serialize_entry("p2p_ports", &run.p2p_ports)?;
                        m.serialize_entry("peers", &st.peers)?;
                        m.serialize_entry("totals", &st.totals)?;
                        m.serialize_entry("event_counts", &run.event_counts)?;
                        m.serialize_entry("max_disconnections_60s", &run.max_disconnections_60s)?;
                        m.serialize_entry("storms", &run.storms)?;
                        m.serialize_entry("reconnecting_peers", &run.reconnecting_peers)?;
                    }
                    _ => {
                        m.serialize_entry("peers", &st.peers)?;
                        m.serialize_entry("events", &n.events)?;
                        m.serialize_entry("events_dropped", &n.events_dropped)?;
                        m.serialize_entry("totals", &st.totals)?;
                        m.serialize_entry("alerts", &n.alerts)?;
                        m.serialize_entry("reconnecting", &n.reconnecting)?;
                        m.serialize_entry("rpc", &n.rpc)?;
                    }
                }
                m.serialize_entry("lost_events", &st.lost_events)?;
                m.serialize_entry("map_full", &st.map_full)?;
            }
        }
        Ok(())
    }

    /// A layer's fields after the correlations: the slow operations (long arrays last), then
    /// what later versions added.
    fn tail<M: SerializeMap>(&self, layer: LayerName, m: &mut M) -> Result<(), M::Error> {
        let summary = self.summary();
        match layer {
            LayerName::Rocksdb => {
                let Some(r) = &self.report.rocksdb else {
                    return Ok(());
                };
                if let Some(slow) = &r.slow {
                    if !summary {
                        m.serialize_entry("slow_ops", &slow.ops)?;
                    }
                    m.serialize_entry("slow_threshold_us", &slow.threshold_us)?;
                    if !summary {
                        m.serialize_entry("slow_recent", &slow.recent)?;
                        m.serialize_entry("slow_ops_60s", &slow.last_60s)?;
                    }
                }
                if !summary {
                    m.serialize_entry("warmup_left_secs", &r.warmup_left_secs)?;
                }
                m.serialize_entry("histograms", &r.histograms)?;
            }
            LayerName::Syscall => {
                // Per-syscall histograms since attach: only in the summary (a line per
                // interval would carry tens of kilobytes).
                if let Some(s) = self.report.syscall.as_ref().filter(|_| summary) {
                    m.serialize_entry("histograms", &s.histograms)?;
                }
            }
            LayerName::Net => {
                let Some(n) = &self.report.net else {
                    return Ok(());
                };
                if !summary {
                    m.serialize_entry("warmup_left_secs", &n.warmup_left_secs)?;
                    m.serialize_entry("recent_events", &n.recent_events)?;
                    m.serialize_entry("events_60s", &n.events_60s)?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.report;
        let h = &r.header;
        let primary = r.primary();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", &h.kind)?;
        m.serialize_entry("timestamp", &h.timestamp)?;
        m.serialize_entry("pid", &h.pid)?;
        m.serialize_entry("node", &h.node)?;
        if self.summary() {
            m.serialize_entry("duration_secs", &h.duration_secs)?;
            m.serialize_entry("end", &h.end)?;
        } else {
            m.serialize_entry("uptime_secs", &h.uptime_secs)?;
            // A syscall-first report gives the measured interval with its own fields.
            if primary != Some(LayerName::Syscall) {
                m.serialize_entry("interval_secs", &h.interval_secs)?;
            }
        }
        if let Some(p) = primary {
            self.head(p, &mut m)?;
        }
        if let (Some(c), false) = (&r.correlations, self.summary()) {
            m.serialize_entry("correlations", c)?;
        }
        if let Some(p) = primary {
            self.tail(p, &mut m)?;
        }
        for &layer in h.layers.iter().skip(1) {
            m.serialize_entry(layer.name(), &Nested { line: self, layer })?;
        }
        m.serialize_entry("layers", &h.layers)?;
        m.serialize_entry("sampling_secs", &h.sampling_secs)?;
        if let Some(chain) = &h.chain {
            m.serialize_entry("chain", chain)?;
        }
        if !r.unavailable.is_empty() {
            m.serialize_entry("unavailable", &r.unavailable)?;
        }
        m.end()
    }
}

/// A line that is not a report of ours.
#[derive(Debug, thiserror::Error)]
#[error("not a ckb-probe report: {0}")]
pub struct ParseError(String);

fn field<T: DeserializeOwned>(m: &Map<String, Value>, k: &str) -> Result<T, ParseError> {
    serde_json::from_value(m.get(k).cloned().unwrap_or(Value::Null))
        .map_err(|e| ParseError(format!("field `{k}`: {e}")))
}

fn field_or<T: DeserializeOwned + Default>(
    m: &Map<String, Value>,
    k: &str,
) -> Result<T, ParseError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(_) => field(m, k),
    }
}

/// A map keyed by names from fixed tables.
fn named<V: DeserializeOwned>(
    m: &Map<String, Value>,
    k: &str,
) -> Result<BTreeMap<Name, V>, ParseError> {
    Ok(field_or::<BTreeMap<String, V>>(m, k)?
        .into_iter()
        .map(|(k, v)| (intern(&k), v))
        .collect())
}

/// The layers of a line written before `layers` was part of it.
fn infer_layers(m: &Map<String, Value>) -> Vec<LayerName> {
    let mut layers = Vec::new();
    if m.contains_key("operations") {
        layers.push(LayerName::Rocksdb);
    } else if m.contains_key("syscalls") {
        layers.push(LayerName::Syscall);
    } else if m.contains_key("path") {
        layers.push(LayerName::Net);
    }
    for l in [LayerName::Syscall, LayerName::Net] {
        if m.get(l.name()).is_some_and(Value::is_object) {
            layers.push(l);
        }
    }
    layers
}

/// Reads one NDJSON line back into the model.
pub fn parse(line: &str) -> Result<Report, ParseError> {
    let top: Map<String, Value> =
        serde_json::from_str(line).map_err(|e| ParseError(e.to_string()))?;
    let kind: Kind = field(&top, "type")?;
    let layers: Vec<LayerName> = match top.get("layers") {
        Some(_) => field(&top, "layers")?,
        None => infer_layers(&top),
    };
    let summary = kind == Kind::Summary;
    let mut header = Header {
        kind,
        timestamp: field(&top, "timestamp")?,
        pid: field(&top, "pid")?,
        node: field(&top, "node")?,
        layers: layers.clone(),
        uptime_secs: field_or(&top, "uptime_secs")?,
        interval_secs: field_or(&top, "interval_secs")?,
        sampling_secs: field_or(&top, "sampling_secs")?,
        duration_secs: field_or(&top, "duration_secs")?,
        end: field_or::<Option<End>>(&top, "end")?,
        chain: field_or(&top, "chain")?,
        kernel: String::new(),
    };
    // The span a layer's rates cover.
    let secs = if summary {
        header.duration_secs
    } else {
        header.interval_secs
    };
    let mut report = Report {
        header: header.clone(),
        rocksdb: None,
        syscall: None,
        net: None,
        correlations: field_or::<Option<Vec<_>>>(&top, "correlations")?,
        unavailable: field_or(&top, "unavailable")?,
    };
    for (i, &layer) in layers.iter().enumerate() {
        let m: &Map<String, Value> = if i == 0 {
            &top
        } else {
            top.get(layer.name())
                .and_then(Value::as_object)
                .ok_or_else(|| ParseError(format!("missing `{}` object", layer.name())))?
        };
        match layer {
            LayerName::Rocksdb => report.rocksdb = Some(rocks(m, summary, secs)?),
            LayerName::Syscall => {
                let s = sys(m, summary)?;
                if i == 0 && !summary {
                    header.interval_secs = s.stats.secs;
                }
                report.syscall = Some(s);
            }
            LayerName::Net => report.net = Some(net(m, summary, secs)?),
        }
    }
    report.header = header;
    Ok(report)
}

fn rocks(m: &Map<String, Value>, summary: bool, secs: f64) -> Result<RocksSection, ParseError> {
    #[derive(serde::Deserialize)]
    struct Cf {
        column: Option<String>,
        operations: BTreeMap<String, OpReport>,
    }
    // Kept in the line's order (CKB column order).
    let cfs: Map<String, Value> = field_or(m, "column_families")?;
    let column_families = cfs
        .into_iter()
        .map(|(name, v)| {
            let cf: Cf = serde_json::from_value(v)
                .map_err(|e| ParseError(format!("column family {name}: {e}")))?;
            Ok(CfReport {
                name,
                column: cf.column.as_deref().map(intern),
                operations: cf
                    .operations
                    .into_iter()
                    .map(|(k, v)| (intern(&k), v))
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    let mode: Option<String> = field_or(m, "mode")?;
    let stats = RocksInterval {
        secs,
        entry_only: mode.as_deref() == Some(LIGHTWEIGHT),
        operations: named(m, "operations")?,
        functions: named(m, "functions")?,
        column_families,
        lost_events: field_or(m, "lost_events")?,
        unpaired: field_or(m, "unpaired")?,
        cf_unresolved: field_or(m, "cf_unresolved")?,
        stats_full: field_or(m, "stats_full")?,
        histograms: BTreeMap::new(),
    };
    let threshold: Option<u64> = field_or(m, "slow_threshold_us")?;
    let slow = match threshold {
        Some(threshold_us) => Some(SlowLog {
            threshold_us,
            ops: field_or(m, "slow_ops")?,
            dropped: field_or(m, "slow_ops_dropped")?,
            recent: field_or(m, "slow_recent")?,
            last_60s: field_or(m, "slow_ops_60s")?,
            total: field_or(m, "slow_ops_total")?,
        }),
        None => None,
    };
    Ok(RocksSection {
        stats,
        anomalies: field_or(m, "anomalies")?,
        warmup_left_secs: field_or(m, "warmup_left_secs")?,
        histograms: named(m, "histograms")?,
        slow,
        attach: summary
            .then(|| -> Result<Attach, ParseError> {
                Ok(Attach {
                    attached: field_or(m, "attached")?,
                    missing: field_or(m, "missing")?,
                    single_stepped: field_or(m, "single_stepped")?,
                    uprobes: field_or(m, "uprobes")?,
                })
            })
            .transpose()?,
    })
}

fn sys(m: &Map<String, Value>, summary: bool) -> Result<SysSection, ParseError> {
    let stats = SysInterval {
        secs: field_or(m, "interval_secs")?,
        syscalls: field_or(m, "syscalls")?,
        roles: named(m, "roles")?,
        derived: field_or(m, "derived")?,
        threads: named(m, "threads")?,
        unpaired: field_or(m, "unpaired")?,
        threads_started: field_or(m, "threads_started")?,
        hist_full: field_or(m, "hist_full")?,
        stats_full: field_or(m, "stats_full")?,
        total_ns: 0,
    };
    let mut s = SysSection {
        stats,
        histograms: field_or(m, "histograms")?,
        arch: if summary { field_or(m, "arch")? } else { None },
    };
    s.restore_internal();
    Ok(s)
}

fn net(m: &Map<String, Value>, summary: bool, secs: f64) -> Result<NetSection, ParseError> {
    let stats = NetInterval {
        secs,
        peers: field_or(m, "peers")?,
        totals: field_or(m, "totals")?,
        lost_events: field_or(m, "lost_events")?,
        map_full: field_or(m, "map_full")?,
    };
    let run = summary
        .then(|| -> Result<NetRun, ParseError> {
            Ok(NetRun {
                programs: field_or(m, "programs")?,
                sock_layout: field_or(m, "sock_layout")?,
                listen_ports: field_or(m, "listen_ports")?,
                p2p_ports: field_or(m, "p2p_ports")?,
                event_counts: named(m, "event_counts")?,
                max_disconnections_60s: field_or(m, "max_disconnections_60s")?,
                storms: field_or(m, "storms")?,
                reconnecting_peers: field_or(m, "reconnecting_peers")?,
            })
        })
        .transpose()?;
    Ok(NetSection {
        path: field_or(m, "path")?,
        stats,
        events: field_or(m, "events")?,
        events_dropped: field_or(m, "events_dropped")?,
        alerts: field_or(m, "alerts")?,
        reconnecting: field_or(m, "reconnecting")?,
        rpc: field_or(m, "rpc")?,
        warmup_left_secs: field_or(m, "warmup_left_secs")?,
        recent_events: field_or(m, "recent_events")?,
        events_60s: field_or(m, "events_60s")?,
        run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{text, thousands};

    /// `ckb-probe rocksdb --slow --threshold 50 --with syscall,net -n 2 --record` on the
    /// testbed: two intervals and the summary.
    const RECORDED: &str = include_str!("../../tests/data/recorded-rocksdb-syscall-net.ndjson");

    fn reports() -> Vec<Report> {
        RECORDED
            .lines()
            .map(|l| parse(l).expect("recorded line parses"))
            .collect()
    }

    #[test]
    fn recorded_lines_round_trip_byte_for_byte() {
        for (i, l) in RECORDED.lines().enumerate() {
            let again = line(&parse(l).unwrap(), Options::default()).unwrap();
            if let Some(at) = again.bytes().zip(l.bytes()).position(|(a, b)| a != b) {
                let from = at.saturating_sub(150);
                panic!(
                    "line {} changed at byte {at}:\n  was {}\n  now {}",
                    i + 1,
                    &l[from..(at + 150).min(l.len())],
                    &again[from..(at + 150).min(again.len())]
                );
            }
            assert_eq!(again.len(), l.len(), "line {} changed length", i + 1);
        }
    }

    #[test]
    fn recorded_run_has_every_layer_and_the_summary() {
        let r = reports();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0].header.layers,
            [LayerName::Rocksdb, LayerName::Syscall, LayerName::Net]
        );
        assert!(r[0].rocksdb.is_some() && r[0].syscall.is_some() && r[0].net.is_some());
        assert!(
            r[0].correlations.is_some(),
            "combined runs carry correlations"
        );
        let slow = r[0].rocksdb.as_ref().unwrap().slow.as_ref().unwrap();
        assert_eq!(slow.threshold_us, 50);
        assert!(!slow.ops.is_empty());
        assert!(slow.ops.iter().all(|o| o.latency_us() >= 50.0));
        let s = &r[2];
        assert_eq!(s.header.kind, Kind::Summary);
        assert_eq!(s.header.end, Some(End::Count));
        let attach = s.rocksdb.as_ref().unwrap().attach.as_ref().unwrap();
        assert_eq!(attach.attached.len(), 23);
        assert!(s.syscall.as_ref().unwrap().arch.is_some());
        assert!(s.net.as_ref().unwrap().run.is_some());
    }

    #[test]
    fn tables_place_the_recorded_numbers() {
        let r = &reports()[0];
        let rocks = r.rocksdb.as_ref().unwrap();
        let get = &rocks.stats.operations["GET"];
        let out = text::render(r, &text::Options::default());
        let title = format!("CKB RocksDB Monitor (PID: {})", r.header.pid);
        assert!(out.contains(&title), "{out}");
        let row = out
            .lines()
            .find(|l| l.starts_with("│ GET "))
            .expect("a GET row");
        let qps = thousands(get.qps.round() as u64);
        assert!(row.contains(&format!(" {qps} ")), "{row} lacks QPS {qps}");
        assert!(out.contains(&format!("CKB Syscall Monitor (PID: {})", r.header.pid)));
        assert!(out.contains("Network"), "{out}");
        // The other views of the same report.
        let slow = text::render(
            r,
            &text::Options {
                rocksdb: text::RocksShow {
                    slow: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        assert!(slow.contains("Slow Operations (threshold: 50μs)"), "{slow}");
        let hist = text::render(
            r,
            &text::Options {
                rocksdb: text::RocksShow {
                    histogram: true,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let total = crate::model::total(&rocks.histograms["GET"]);
        assert!(
            hist.contains(&format!("GET ({} ops)", thousands(total))),
            "{hist}"
        );
        let summary = text::render(&reports()[2], &text::Options::default());
        assert!(summary.contains("Summary over"), "{summary}");
        assert!(summary.contains("Syscall summary over"), "{summary}");
        assert!(summary.contains("Network summary over"), "{summary}");
    }

    #[test]
    fn lines_without_layers_are_understood() {
        let first = RECORDED.lines().next().unwrap();
        let mut v: Map<String, Value> = serde_json::from_str(first).unwrap();
        v.remove("layers");
        let r = parse(&Value::Object(v).to_string()).unwrap();
        assert_eq!(
            r.header.layers,
            [LayerName::Rocksdb, LayerName::Syscall, LayerName::Net]
        );
    }

    #[test]
    fn foreign_lines_are_refused() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"type":"interval"}"#).is_err());
        assert!(parse(r#"{"type":"nonsense","timestamp":"x","pid":1,"node":"n"}"#).is_err());
    }
}
