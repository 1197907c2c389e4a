pub mod check;
pub mod net;
pub mod rocksdb;
pub mod runner;
pub mod symbols;
pub mod syscall;
