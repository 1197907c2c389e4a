//! Presentation helpers shared by every layer's views: number formats and box tables.

pub mod ndjson;
pub mod net;
pub mod prometheus;
pub mod rocksdb;
pub mod syscall;
pub mod text;
pub mod tui;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-04-15T02:17:45Z` (UTC, seconds).
pub fn rfc3339(t: SystemTime) -> String {
    // Precision 0 cuts the fraction off (it does not round).
    format!("{:.0}", civil(t))
}

/// `02:17:41.023` (UTC).
pub fn clock_ms(t: SystemTime) -> String {
    format!("{:.3}", jiff::tz::Offset::UTC.to_datetime(civil(t)).time())
}

/// `t` in UTC; a time before 1970 (a clock set wrong) reads as the epoch.
fn civil(t: SystemTime) -> jiff::Timestamp {
    jiff::Timestamp::try_from(t.max(UNIX_EPOCH)).unwrap_or(jiff::Timestamp::MAX)
}

#[cfg(test)]
mod date_tests {
    use super::*;

    fn at(secs: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms)
    }

    #[test]
    fn leap_years() {
        // Epoch seconds from `date -u -d ... +%s`.
        for (secs, want) in [
            (1_709_164_799, "2024-02-28T23:59:59Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_709_251_200, "2024-03-01T00:00:00Z"),
            (946_684_799, "1999-12-31T23:59:59Z"),
            // 2000 is a leap year (divisible by 400), 2100 is not (by 100 only).
            (951_827_696, "2000-02-29T12:34:56Z"),
            (951_868_800, "2000-03-01T00:00:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (2_147_483_648, "2038-01-19T03:14:08Z"),
            (0, "1970-01-01T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(at(secs, 999)), want, "{secs}");
        }
    }

    #[test]
    fn milliseconds_and_clock() {
        assert_eq!(clock_ms(at(1_709_251_199, 999)), "23:59:59.999");
        assert_eq!(clock_ms(at(1_709_251_200, 0)), "00:00:00.000");
        assert_eq!(clock_ms(at(4_107_542_400, 23)), "00:00:00.023");
        // Sub-millisecond parts are cut, not rounded up into the next second.
        let t = at(951_827_696, 0) + Duration::from_nanos(999_999_999);
        assert_eq!(clock_ms(t), "12:34:56.999");
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56Z");
    }

    #[test]
    fn before_the_epoch_reads_as_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(rfc3339(t), "1970-01-01T00:00:00Z");
        assert_eq!(clock_ms(t), "00:00:00.000");
    }
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
