//! A sliding-window value with an EWMA baseline, the building block of every anomaly rule:
//! the current value is `sum(num) / sum(den)` over the last window (an average latency is
//! total ns / calls, a rate is calls / seconds), and the baseline learns from it once per
//! window, never from a spike, so a storm does not teach the baseline that storms are normal.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// The baseline learns only from windows at most this many times itself.
pub const LEARN_LIMIT: f64 = 2.0;

#[derive(Clone, Copy, Debug)]
pub struct BaselineConfig {
    /// EWMA weight of the newest window.
    pub alpha: f64,
    /// The current value is a spike above `factor` × baseline.
    pub factor: f64,
    pub window: Duration,
    /// Windows with less than this denominator (e.g. calls) say nothing.
    pub min_den: f64,
}

/// What one observation concluded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub current: Option<f64>,
    pub baseline: Option<f64>,
    pub spike: bool,
}

impl Reading {
    pub fn multiplier(&self) -> Option<f64> {
        match (self.current, self.baseline) {
            (Some(c), Some(b)) if b > 0.0 => Some(c / b),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct WindowedBaseline {
    cfg: BaselineConfig,
    window: VecDeque<(Instant, f64, f64)>,
    baseline: Option<f64>,
    last_update: Option<Instant>,
    first_seen: Option<Instant>,
}

impl WindowedBaseline {
    pub fn new(cfg: BaselineConfig) -> Self {
        WindowedBaseline {
            cfg,
            window: VecDeque::new(),
            baseline: None,
            last_update: None,
            first_seen: None,
        }
    }

    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }

    /// Adds one interval's `num` and `den` observed at `now`.
    pub fn observe(&mut self, now: Instant, num: f64, den: f64) -> Reading {
        self.window.push_back((now, num, den));
        while self
            .window
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) >= self.cfg.window)
        {
            self.window.pop_front();
        }
        let (n, d) = self
            .window
            .iter()
            .fold((0.0, 0.0), |(n, d), (_, x, y)| (n + x, d + y));
        let current = (d >= self.cfg.min_den && d > 0.0).then(|| n / d);
        let spike = match (current, self.baseline) {
            (Some(c), Some(b)) if b > 0.0 => c > self.cfg.factor * b,
            _ => false,
        };
        // The first seconds of a storm are still below the alert factor in a call-weighted
        // window: learning from them would raise the baseline and delay the alert.
        let rising = match (current, self.baseline) {
            (Some(c), Some(b)) if b > 0.0 => c > LEARN_LIMIT * b,
            _ => false,
        };
        // The first baseline waits for a full window of data: a baseline from the first second
        // (cold caches, start-up work) would make every later second look like a spike.
        let first = *self.first_seen.get_or_insert(now);
        let full = now.duration_since(first) + self.cfg.window / 10 >= self.cfg.window;
        let due = full
            && self
                .last_update
                .is_none_or(|t| now.duration_since(t) >= self.cfg.window);
        if let (Some(c), true, false) = (current, due, spike || rising) {
            self.baseline = Some(match self.baseline {
                None => c,
                Some(b) => self.cfg.alpha * c + (1.0 - self.cfg.alpha) * b,
            });
            self.last_update = Some(now);
        }
        Reading {
            current,
            baseline: self.baseline,
            spike,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BaselineConfig {
        BaselineConfig {
            alpha: 0.3,
            factor: 5.0,
            window: Duration::from_secs(10),
            min_den: 10.0,
        }
    }

    #[test]
    fn learns_then_flags_a_spike_without_learning_it() {
        let t0 = Instant::now();
        let mut b = WindowedBaseline::new(cfg());
        for s in 0..30 {
            let r = b.observe(t0 + Duration::from_secs(s), 1000.0 * 10.0, 1000.0);
            assert!(!r.spike);
        }
        let learnt = b.baseline().unwrap();
        assert!((learnt - 10.0).abs() < 1e-9);
        // A storm: 100 calls/s at 1000 per call.
        let mut fired = None;
        for s in 30..45 {
            let r = b.observe(t0 + Duration::from_secs(s), 100.0 * 1000.0, 100.0);
            if r.spike && fired.is_none() {
                fired = Some(s);
            }
        }
        let fired = fired.expect("no spike");
        assert!(fired <= 35, "fired late at {fired}");
        assert!(b.baseline().unwrap() < 20.0, "baseline learnt the storm");
    }

    #[test]
    fn too_little_data_says_nothing() {
        let mut b = WindowedBaseline::new(cfg());
        let r = b.observe(Instant::now(), 50.0, 5.0);
        assert_eq!(r.current, None);
        assert!(!r.spike);
    }
}
