pub mod check;
pub mod net;
pub mod overview;
pub mod replay;
pub mod rocksdb;
pub mod runner;
pub mod symbols;
pub mod syscall;
