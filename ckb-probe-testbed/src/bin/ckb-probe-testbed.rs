//! RocksDB linked statically into this executable (like the CKB node): the `rocksdb_*` C API
//! functions live in this file's own symbol table.
fn main() -> std::process::ExitCode {
    ckb_probe_testbed::run(ckb_probe_testbed::LinkMode::Static)
}
