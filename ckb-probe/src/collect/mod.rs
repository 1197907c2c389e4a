//! Collectors: one per layer, each owning its kernel maps and turning them into snapshots.

pub mod rocksdb;
pub mod syscall;
