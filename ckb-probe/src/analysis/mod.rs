//! Analysis: percentiles from histograms, interval statistics, EWMA baselines and anomaly rules.

pub mod anomaly;
pub mod baseline;
pub mod correlate;
pub mod hist;
pub mod net;
pub mod rocksdb;
pub mod syscall;
pub mod syscall_names;
