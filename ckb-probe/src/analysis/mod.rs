//! Analysis: percentiles from histograms, interval statistics, EWMA baselines and anomaly rules.

pub mod anomaly;
pub mod hist;
pub mod rocksdb;
