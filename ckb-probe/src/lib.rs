//! ckb-probe: deep observability for CKB full nodes with eBPF.
//!
//! Module map (one job each):
//! - [`target`]: finding the node process, its executable and libraries.
//! - [`symbols`]: ELF analysis of a binary (tiers, RocksDB linkage, attach offsets).
//! - [`check`]: can this machine and this target be traced?
//! - [`probe`]: loading the embedded kernel programs, attaching and detaching them.
//! - [`collect`]: one collector per layer, reading the kernel maps into snapshots.
//! - [`analysis`]: percentiles, rates, EWMA baselines and anomaly rules.
//! - [`view`]: tables, histograms, NDJSON and Prometheus metrics.
//! - [`http`]: the exporter's HTTP server.

pub mod analysis;
pub mod check;
pub mod collect;
pub mod error;
pub mod http;
pub mod model;
pub mod node;
pub mod privileges;
pub mod probe;
pub mod session;
pub mod symbols;
pub mod target;
pub mod view;
