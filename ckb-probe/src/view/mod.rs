//! Presentation helpers shared by every layer's views: number formats and box tables.

pub mod ndjson;
pub mod net;
pub mod rocksdb;
pub mod syscall;
pub mod text;
pub mod tui;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-04-15T02:17:45Z` (UTC, seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let (date, secs) = civil(t);
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `02:17:41.023` (UTC).
pub fn clock_ms(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_millis();
    let (_, secs) = civil(t);
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// (YYYY-MM-DD, seconds into the day) of a UTC time, by Howard Hinnant's days-to-civil.
fn civil(t: SystemTime) -> (String, u64) {
    let s = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = (s / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (format!("{y:04}-{m:02}-{d:02}"), s % 86_400)
}

/// `00:05:32`.
pub fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `3,241`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds with one decimal and thousands separators: `2,841.0`.
pub fn us(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) => {
            let tenths = (v * 10.0).round() as u64;
            format!("{}.{}", thousands(tenths / 10), tenths % 10)
        }
    }
}

/// Human latency from microseconds: `8,912μs`, `1.2s`.
pub fn latency(us_v: f64) -> String {
    if us_v >= 1_000_000.0 {
        format!("{:.2}s", us_v / 1_000_000.0)
    } else {
        format!("{}μs", thousands(us_v.round() as u64))
    }
}

/// Bytes: `512 B`, `2.1 KB`, `4.2 MB` (powers of 1024).
pub fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", v.round() as u64)
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A duration in ns as a short label: `512ns`, `4μs`, `16ms`, `2s`.
pub fn ns_label(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}μs", ns / 1_000)
    } else if ns < 1_000_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{}s", ns / 1_000_000_000)
    }
}

/// A latency histogram folded for display into one row per power of two, `(low_ns, high_ns,
/// count)` from the first non-empty row to the last (the kernel's finer sub-buckets are
/// summed; empty rows in between are kept so the shape reads right).
pub fn log2_rows(h: &[crate::model::Bucket]) -> Vec<(u64, u64, u64)> {
    let mut by_pow: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for b in h {
        let pow_lo = if b.low_ns == 0 {
            0
        } else {
            1u64 << (63 - b.low_ns.leading_zeros())
        };
        *by_pow.entry(pow_lo).or_default() += b.count;
    }
    let (Some(&first), Some(&last)) = (by_pow.keys().next(), by_pow.keys().next_back()) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let mut pow = first;
    loop {
        let hi = if pow == 0 { 1 } else { pow.saturating_mul(2) };
        rows.push((pow, hi, by_pow.get(&pow).copied().unwrap_or(0)));
        if pow >= last || hi == u64::MAX {
            break;
        }
        pow = hi;
    }
    rows
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A rounded box table like the spec's examples.
pub struct Table {
    pub title: String,
    /// Lines inside the box above the header (e.g. uptime and sampling).
    pub banner: Vec<String>,
    pub header: Vec<String>,
    pub align: Vec<Align>,
    pub rows: Vec<Vec<String>>,
}

fn width(s: &str) -> usize {
    s.chars().count()
}

impl Table {
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut w: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                w[i] = w[i].max(width(cell));
            }
        }
        // Inner width: cells plus one space of padding each side plus separators.
        let mut inner: usize = w.iter().map(|x| x + 2).sum::<usize>() + n - 1;
        let need = self
            .banner
            .iter()
            .map(|b| width(b) + 2)
            .chain([width(&self.title) + 4])
            .max()
            .unwrap_or(0);
        if need > inner {
            w[n - 1] += need - inner;
            inner = need;
        }
        let mut out = String::new();
        let title = format!(" {} ", self.title);
        let left = (inner - width(&title)) / 2;
        let right = inner - width(&title) - left;
        out.push_str(&format!(
            "╭{}{title}{}╮\n",
            "─".repeat(left),
            "─".repeat(right)
        ));
        for b in &self.banner {
            out.push_str(&format!("│ {b}{} │\n", " ".repeat(inner - 2 - width(b))));
        }
        let sep = |l: &str, m: &str, r: &str| {
            let parts: Vec<String> = w.iter().map(|x| "─".repeat(x + 2)).collect();
            format!("{l}{}{r}\n", parts.join(m))
        };
        out.push_str(&sep("├", "┬", "┤"));
        let line = |cells: &[String]| {
            let parts: Vec<String> = (0..n)
                .map(|i| {
                    let c = cells.get(i).map_or("", |s| s.as_str());
                    let pad = " ".repeat(w[i] - width(c));
                    match self.align.get(i).copied().unwrap_or(Align::Left) {
                        Align::Left => format!(" {c}{pad} "),
                        Align::Right => format!(" {pad}{c} "),
                    }
                })
                .collect();
            format!("│{}│\n", parts.join("│"))
        };
        out.push_str(&line(&self.header));
        out.push_str(&sep("├", "┼", "┤"));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out.push_str(&sep("╰", "┴", "╯"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(3241), "3,241");
        assert_eq!(thousands(12), "12");
        assert_eq!(us(Some(2841.0)), "2,841.0");
        assert_eq!(us(None), "—");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(4.2 * 1024.0 * 1024.0), "4.2 MB");
        assert_eq!(hms(Duration::from_secs(8265)), "02:17:45");
        let t = UNIX_EPOCH + Duration::from_secs(1_776_219_465);
        assert_eq!(rfc3339(t), "2026-04-15T02:17:45Z");
    }

    #[test]
    fn table_lines_have_equal_width() {
        let t = Table {
            title: "T".into(),
            banner: vec!["Uptime: 00:00:01".into()],
            header: vec!["Operation".into(), "QPS".into()],
            align: vec![Align::Left, Align::Right],
            rows: vec![vec!["GET".into(), "3,241".into()]],
        };
        let s = t.render();
        let widths: Vec<usize> = s.lines().map(width).collect();
        assert!(widths.iter().all(|&x| x == widths[0]), "{s}");
    }
}
