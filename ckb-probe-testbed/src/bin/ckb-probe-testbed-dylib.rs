//! RocksDB linked dynamically: the `rocksdb_*` C API functions live in `librocksdb.so`.
fn main() -> std::process::ExitCode {
    ckb_probe_testbed::run(ckb_probe_testbed::LinkMode::Dylib)
}
