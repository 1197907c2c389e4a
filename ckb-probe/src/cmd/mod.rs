pub mod check;
pub mod rocksdb;
pub mod symbols;
pub mod syscall;
