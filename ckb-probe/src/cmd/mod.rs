pub mod check;
pub mod export;
pub mod net;
pub mod replay;
pub mod rocksdb;
pub mod runner;
pub mod symbols;
pub mod syscall;
