//! Collectors: one per layer, each owning its kernel maps and turning them into snapshots.

pub mod batch;
pub mod clock;
pub mod net;
pub mod rocksdb;
pub mod syscall;
