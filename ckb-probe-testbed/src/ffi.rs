//! The only module with `unsafe`: raw RocksDB C API declarations, safe wrappers on top of them,
//! and the SIGTERM/SIGINT handler.
//!
//! Contract of the wrappers: every method performs exactly ONE C call, with no C calls hidden
//! anywhere else, so that the workload can count and time each call it makes. The object-freeing
//! calls (`*_destroy`, `rocksdb_free`) are explicit consuming methods for the same reason; the
//! `Drop` impls are only a leak guard for unwinding and are never reached on the normal path.
//!
//! The `extern` block deliberately has no `#[link]` attribute: `build.rs` links the static
//! archive into one binary and `librocksdb.so` into the other.

use std::ffi::{CStr, CString, c_char, c_int, c_uchar, c_void};
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

macro_rules! opaque {
    ($($name:ident),* $(,)?) => {
        $(
            #[allow(non_camel_case_types)]
            #[repr(C)]
            pub struct $name {
                _private: [u8; 0],
            }
        )*
    };
}

opaque!(
    rocksdb_t,
    rocksdb_optimistictransactiondb_t,
    rocksdb_options_t,
    rocksdb_readoptions_t,
    rocksdb_writeoptions_t,
    rocksdb_optimistictransaction_options_t,
    rocksdb_transaction_t,
    rocksdb_column_family_handle_t,
    rocksdb_pinnableslice_t,
    rocksdb_writebatch_t,
    rocksdb_iterator_t,
);

// Signatures copied from rocksdb/c.h (RocksDB 7.8.3).
unsafe extern "C" {
    fn rocksdb_options_create() -> *mut rocksdb_options_t;
    fn rocksdb_options_destroy(opt: *mut rocksdb_options_t);
    fn rocksdb_options_set_create_if_missing(opt: *mut rocksdb_options_t, v: c_uchar);
    fn rocksdb_options_set_create_missing_column_families(opt: *mut rocksdb_options_t, v: c_uchar);

    fn rocksdb_readoptions_create() -> *mut rocksdb_readoptions_t;
    fn rocksdb_readoptions_destroy(opt: *mut rocksdb_readoptions_t);
    fn rocksdb_writeoptions_create() -> *mut rocksdb_writeoptions_t;
    fn rocksdb_writeoptions_destroy(opt: *mut rocksdb_writeoptions_t);
    fn rocksdb_writeoptions_set_sync(opt: *mut rocksdb_writeoptions_t, v: c_uchar);
    fn rocksdb_optimistictransaction_options_create() -> *mut rocksdb_optimistictransaction_options_t;
    fn rocksdb_optimistictransaction_options_destroy(
        opt: *mut rocksdb_optimistictransaction_options_t,
    );

    fn rocksdb_optimistictransactiondb_open_column_families(
        options: *const rocksdb_options_t,
        name: *const c_char,
        num_column_families: c_int,
        column_family_names: *const *const c_char,
        column_family_options: *const *const rocksdb_options_t,
        column_family_handles: *mut *mut rocksdb_column_family_handle_t,
        errptr: *mut *mut c_char,
    ) -> *mut rocksdb_optimistictransactiondb_t;
    fn rocksdb_optimistictransactiondb_get_base_db(
        otxn_db: *mut rocksdb_optimistictransactiondb_t,
    ) -> *mut rocksdb_t;
    fn rocksdb_optimistictransactiondb_close_base_db(base_db: *mut rocksdb_t);
    fn rocksdb_optimistictransactiondb_close(otxn_db: *mut rocksdb_optimistictransactiondb_t);
    fn rocksdb_column_family_handle_destroy(h: *mut rocksdb_column_family_handle_t);

    fn rocksdb_optimistictransaction_begin(
        otxn_db: *mut rocksdb_optimistictransactiondb_t,
        write_options: *const rocksdb_writeoptions_t,
        otxn_options: *const rocksdb_optimistictransaction_options_t,
        old_txn: *mut rocksdb_transaction_t,
    ) -> *mut rocksdb_transaction_t;
    fn rocksdb_transaction_get_pinned_cf(
        txn: *mut rocksdb_transaction_t,
        options: *const rocksdb_readoptions_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        klen: usize,
        errptr: *mut *mut c_char,
    ) -> *mut rocksdb_pinnableslice_t;
    fn rocksdb_transaction_get_for_update_cf(
        txn: *mut rocksdb_transaction_t,
        options: *const rocksdb_readoptions_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        klen: usize,
        vlen: *mut usize,
        exclusive: c_uchar,
        errptr: *mut *mut c_char,
    ) -> *mut c_char;
    fn rocksdb_transaction_put_cf(
        txn: *mut rocksdb_transaction_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        klen: usize,
        val: *const c_char,
        vlen: usize,
        errptr: *mut *mut c_char,
    );
    fn rocksdb_transaction_delete_cf(
        txn: *mut rocksdb_transaction_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        klen: usize,
        errptr: *mut *mut c_char,
    );
    fn rocksdb_transaction_commit(txn: *mut rocksdb_transaction_t, errptr: *mut *mut c_char);
    fn rocksdb_transaction_destroy(txn: *mut rocksdb_transaction_t);

    fn rocksdb_get(
        db: *mut rocksdb_t,
        options: *const rocksdb_readoptions_t,
        key: *const c_char,
        keylen: usize,
        vallen: *mut usize,
        errptr: *mut *mut c_char,
    ) -> *mut c_char;
    fn rocksdb_get_cf(
        db: *mut rocksdb_t,
        options: *const rocksdb_readoptions_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        keylen: usize,
        vallen: *mut usize,
        errptr: *mut *mut c_char,
    ) -> *mut c_char;
    fn rocksdb_get_pinned(
        db: *mut rocksdb_t,
        options: *const rocksdb_readoptions_t,
        key: *const c_char,
        keylen: usize,
        errptr: *mut *mut c_char,
    ) -> *mut rocksdb_pinnableslice_t;
    fn rocksdb_get_pinned_cf(
        db: *mut rocksdb_t,
        options: *const rocksdb_readoptions_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        keylen: usize,
        errptr: *mut *mut c_char,
    ) -> *mut rocksdb_pinnableslice_t;
    fn rocksdb_pinnableslice_value(
        t: *const rocksdb_pinnableslice_t,
        vlen: *mut usize,
    ) -> *const c_char;
    fn rocksdb_pinnableslice_destroy(v: *mut rocksdb_pinnableslice_t);
    fn rocksdb_free(ptr: *mut c_void);

    fn rocksdb_put(
        db: *mut rocksdb_t,
        options: *const rocksdb_writeoptions_t,
        key: *const c_char,
        keylen: usize,
        val: *const c_char,
        vallen: usize,
        errptr: *mut *mut c_char,
    );
    fn rocksdb_put_cf(
        db: *mut rocksdb_t,
        options: *const rocksdb_writeoptions_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        keylen: usize,
        val: *const c_char,
        vallen: usize,
        errptr: *mut *mut c_char,
    );
    fn rocksdb_delete(
        db: *mut rocksdb_t,
        options: *const rocksdb_writeoptions_t,
        key: *const c_char,
        keylen: usize,
        errptr: *mut *mut c_char,
    );
    fn rocksdb_delete_cf(
        db: *mut rocksdb_t,
        options: *const rocksdb_writeoptions_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        keylen: usize,
        errptr: *mut *mut c_char,
    );

    fn rocksdb_writebatch_create() -> *mut rocksdb_writebatch_t;
    fn rocksdb_writebatch_destroy(b: *mut rocksdb_writebatch_t);
    fn rocksdb_writebatch_put(
        b: *mut rocksdb_writebatch_t,
        key: *const c_char,
        klen: usize,
        val: *const c_char,
        vlen: usize,
    );
    fn rocksdb_writebatch_put_cf(
        b: *mut rocksdb_writebatch_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        klen: usize,
        val: *const c_char,
        vlen: usize,
    );
    fn rocksdb_writebatch_delete(b: *mut rocksdb_writebatch_t, key: *const c_char, klen: usize);
    fn rocksdb_writebatch_delete_cf(
        b: *mut rocksdb_writebatch_t,
        cf: *mut rocksdb_column_family_handle_t,
        key: *const c_char,
        klen: usize,
    );
    fn rocksdb_write(
        db: *mut rocksdb_t,
        options: *const rocksdb_writeoptions_t,
        batch: *mut rocksdb_writebatch_t,
        errptr: *mut *mut c_char,
    );

    fn rocksdb_create_iterator_cf(
        db: *mut rocksdb_t,
        options: *const rocksdb_readoptions_t,
        cf: *mut rocksdb_column_family_handle_t,
    ) -> *mut rocksdb_iterator_t;
    fn rocksdb_iter_destroy(it: *mut rocksdb_iterator_t);
    fn rocksdb_iter_valid(it: *const rocksdb_iterator_t) -> c_uchar;
    fn rocksdb_iter_seek_to_first(it: *mut rocksdb_iterator_t);
    fn rocksdb_iter_seek_to_last(it: *mut rocksdb_iterator_t);
    fn rocksdb_iter_seek(it: *mut rocksdb_iterator_t, k: *const c_char, klen: usize);
    fn rocksdb_iter_seek_for_prev(it: *mut rocksdb_iterator_t, k: *const c_char, klen: usize);
    fn rocksdb_iter_next(it: *mut rocksdb_iterator_t);
    fn rocksdb_iter_get_error(it: *const rocksdb_iterator_t, errptr: *mut *mut c_char);

    fn rocksdb_compact_range_cf(
        db: *mut rocksdb_t,
        cf: *mut rocksdb_column_family_handle_t,
        start_key: *const c_char,
        start_key_len: usize,
        limit_key: *const c_char,
        limit_key_len: usize,
    );
}

/// An error string returned through a C `errptr`.
#[derive(Debug, Clone)]
pub struct RocksError(pub String);

impl fmt::Display for RocksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RocksError {}

/// Turns a C `errptr` into a `Result`, freeing the message.
///
/// The message is freed with libc's `free` (RocksDB allocates it with `strdup`), not with
/// `rocksdb_free`, so that error handling never adds calls to a `rocksdb_*` function.
fn check(err: *mut c_char) -> Result<(), RocksError> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-NULL errptr is a NUL-terminated string that RocksDB malloc'ed and handed over
    // to us; it is read once and freed once.
    let msg = unsafe {
        let msg = CStr::from_ptr(err).to_string_lossy().into_owned();
        libc::free(err.cast());
        msg
    };
    Err(RocksError(msg))
}

fn cptr(bytes: &[u8]) -> *const c_char {
    bytes.as_ptr().cast()
}

/// Column family handle borrowed from a [`Db`].
#[derive(Clone, Copy)]
pub struct Cf<'db> {
    raw: *mut rocksdb_column_family_handle_t,
    _db: PhantomData<&'db Db>,
}

/// The database options shared by every column family.
struct Options(*mut rocksdb_options_t);

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by rocksdb_options_create, destroyed exactly once; RocksDB copies options
        // at open, so destroying them after the DB is closed (or if open failed) is fine.
        unsafe { rocksdb_options_destroy(self.0) }
    }
}

/// An open OptimisticTransactionDB plus its base DB and column family handles.
pub struct Db {
    otxn: *mut rocksdb_optimistictransactiondb_t,
    base: *mut rocksdb_t,
    cfs: Vec<*mut rocksdb_column_family_handle_t>,
    _options: Options,
}

// SAFETY: RocksDB documents DB, OptimisticTransactionDB and column family handles as safe for
// concurrent use from several threads; the handles are only freed in Drop, which needs `&mut`.
unsafe impl Send for Db {}
// SAFETY: see above.
unsafe impl Sync for Db {}

impl Db {
    /// Opens (creating if missing) an OptimisticTransactionDB with the given column families, in
    /// the order given; `cf_names[0]` must be "default".
    pub fn open(path: &Path, cf_names: &[&str]) -> Result<Db, RocksError> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| RocksError(format!("DB path {} contains a NUL byte", path.display())))?;
        let names: Vec<CString> = cf_names
            .iter()
            .map(|n| {
                CString::new(*n).map_err(|_| RocksError(format!("bad column family name {n:?}")))
            })
            .collect::<Result<_, _>>()?;
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let count = c_int::try_from(names.len())
            .map_err(|_| RocksError("too many column families".into()))?;
        // SAFETY: plain constructor; the Options guard owns the result from here on.
        let options = Options(unsafe { rocksdb_options_create() });
        // SAFETY: options is a valid, exclusively owned options object.
        unsafe {
            rocksdb_options_set_create_if_missing(options.0, 1);
            rocksdb_options_set_create_missing_column_families(options.0, 1);
        }
        let cf_opts: Vec<*const rocksdb_options_t> = vec![options.0.cast_const(); names.len()];
        let mut handles: Vec<*mut rocksdb_column_family_handle_t> =
            vec![ptr::null_mut(); names.len()];
        let mut err = ptr::null_mut();
        // SAFETY: every array has `count` elements and outlives the call; the strings are
        // NUL-terminated; RocksDB fills `handles` on success and leaves them untouched on error.
        let otxn = unsafe {
            rocksdb_optimistictransactiondb_open_column_families(
                options.0,
                cpath.as_ptr(),
                count,
                name_ptrs.as_ptr(),
                cf_opts.as_ptr(),
                handles.as_mut_ptr(),
                &mut err,
            )
        };
        check(err)?;
        if otxn.is_null() {
            return Err(RocksError(
                "rocksdb_optimistictransactiondb_open_column_families returned NULL".into(),
            ));
        }
        // SAFETY: otxn is a freshly opened, valid DB.
        let base = unsafe { rocksdb_optimistictransactiondb_get_base_db(otxn) };
        Ok(Db {
            otxn,
            base,
            cfs: handles,
            _options: options,
        })
    }

    /// Column family handle by its position in the `cf_names` given to [`Db::open`].
    pub fn cf(&self, index: usize) -> Cf<'_> {
        Cf {
            raw: self.cfs[index],
            _db: PhantomData,
        }
    }

    pub fn begin(&self, wo: &WriteOptions, to: &TxnOptions) -> Txn<'_> {
        // SAFETY: valid DB and options; old_txn NULL asks for a fresh transaction object.
        let raw =
            unsafe { rocksdb_optimistictransaction_begin(self.otxn, wo.0, to.0, ptr::null_mut()) };
        Txn {
            raw,
            _db: PhantomData,
        }
    }

    pub fn get_pinned_cf(
        &self,
        ro: &ReadOptions,
        cf: Cf<'_>,
        key: &[u8],
    ) -> Result<Option<Pinned>, RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: valid handles; key is only read during the call.
        let p = unsafe {
            rocksdb_get_pinned_cf(self.base, ro.0, cf.raw, cptr(key), key.len(), &mut err)
        };
        pinned_result(p, err)
    }

    pub fn get_pinned(&self, ro: &ReadOptions, key: &[u8]) -> Result<Option<Pinned>, RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: as in get_pinned_cf.
        let p = unsafe { rocksdb_get_pinned(self.base, ro.0, cptr(key), key.len(), &mut err) };
        pinned_result(p, err)
    }

    pub fn get(&self, ro: &ReadOptions, key: &[u8]) -> Result<Option<MallocValue>, RocksError> {
        let mut err = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: as in get_pinned_cf; `len` is written only when a value is returned.
        let p = unsafe { rocksdb_get(self.base, ro.0, cptr(key), key.len(), &mut len, &mut err) };
        malloc_result(p, len, err)
    }

    pub fn get_cf(
        &self,
        ro: &ReadOptions,
        cf: Cf<'_>,
        key: &[u8],
    ) -> Result<Option<MallocValue>, RocksError> {
        let mut err = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: as in get.
        let p = unsafe {
            rocksdb_get_cf(
                self.base,
                ro.0,
                cf.raw,
                cptr(key),
                key.len(),
                &mut len,
                &mut err,
            )
        };
        malloc_result(p, len, err)
    }

    pub fn put(&self, wo: &WriteOptions, key: &[u8], val: &[u8]) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: key and value are copied by RocksDB during the call.
        unsafe {
            rocksdb_put(
                self.base,
                wo.0,
                cptr(key),
                key.len(),
                cptr(val),
                val.len(),
                &mut err,
            )
        };
        check(err)
    }

    pub fn put_cf(
        &self,
        wo: &WriteOptions,
        cf: Cf<'_>,
        key: &[u8],
        val: &[u8],
    ) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: as in put.
        unsafe {
            rocksdb_put_cf(
                self.base,
                wo.0,
                cf.raw,
                cptr(key),
                key.len(),
                cptr(val),
                val.len(),
                &mut err,
            )
        };
        check(err)
    }

    pub fn delete(&self, wo: &WriteOptions, key: &[u8]) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: as in put.
        unsafe { rocksdb_delete(self.base, wo.0, cptr(key), key.len(), &mut err) };
        check(err)
    }

    pub fn delete_cf(&self, wo: &WriteOptions, cf: Cf<'_>, key: &[u8]) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: as in put.
        unsafe { rocksdb_delete_cf(self.base, wo.0, cf.raw, cptr(key), key.len(), &mut err) };
        check(err)
    }

    pub fn write(&self, wo: &WriteOptions, batch: &mut WriteBatch) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: the batch is valid and not used concurrently (we hold `&mut`).
        unsafe { rocksdb_write(self.base, wo.0, batch.raw, &mut err) };
        check(err)
    }

    pub fn iter_cf(&self, ro: &ReadOptions, cf: Cf<'_>) -> DbIter<'_> {
        // SAFETY: valid handles; the iterator borrows the DB via the lifetime.
        let raw = unsafe { rocksdb_create_iterator_cf(self.base, ro.0, cf.raw) };
        DbIter {
            raw,
            _db: PhantomData,
        }
    }

    /// Full-range manual compaction of one column family (blocks until done).
    pub fn compact_range_cf(&self, cf: Cf<'_>) {
        // SAFETY: NULL start/limit with length 0 means "the whole key range".
        unsafe { rocksdb_compact_range_cf(self.base, cf.raw, ptr::null(), 0, ptr::null(), 0) }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: all borrowers (transactions, iterators) are gone because they borrow `self`;
        // handles are destroyed before the DB they belong to, each exactly once. The base-db
        // wrapper from get_base_db must be released with close_base_db, not rocksdb_close.
        unsafe {
            for h in self.cfs.drain(..) {
                rocksdb_column_family_handle_destroy(h);
            }
            rocksdb_optimistictransactiondb_close_base_db(self.base);
            rocksdb_optimistictransactiondb_close(self.otxn);
        }
    }
}

fn pinned_result(
    p: *mut rocksdb_pinnableslice_t,
    err: *mut c_char,
) -> Result<Option<Pinned>, RocksError> {
    let guard = (!p.is_null()).then_some(Pinned { raw: p });
    check(err)?;
    Ok(guard)
}

fn malloc_result(
    p: *mut c_char,
    len: usize,
    err: *mut c_char,
) -> Result<Option<MallocValue>, RocksError> {
    let guard = (!p.is_null()).then_some(MallocValue { raw: p, len });
    check(err)?;
    Ok(guard)
}

/// A value returned by `rocksdb_get_pinned*`; must be released with [`Pinned::destroy`].
#[must_use = "release with Pinned::destroy so the rocksdb_pinnableslice_destroy call is counted"]
pub struct Pinned {
    raw: *mut rocksdb_pinnableslice_t,
}

impl Pinned {
    /// Length of the value (one `rocksdb_pinnableslice_value` call).
    pub fn value_len(&self) -> usize {
        let mut len = 0usize;
        // SAFETY: raw is a live pinnable slice.
        unsafe { rocksdb_pinnableslice_value(self.raw, &mut len) };
        len
    }

    pub fn destroy(self) {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: raw is live and, with `self` forgotten, freed exactly once here.
        unsafe { rocksdb_pinnableslice_destroy(raw) }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: leak guard only (unwinding); freed exactly once because destroy() forgets self.
        unsafe { rocksdb_pinnableslice_destroy(self.raw) }
    }
}

/// A malloc'ed value returned by `rocksdb_get*`; must be released with [`MallocValue::free`].
#[must_use = "release with MallocValue::free so the rocksdb_free call is counted"]
pub struct MallocValue {
    raw: *mut c_char,
    len: usize,
}

impl MallocValue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Releases the value with `rocksdb_free`.
    pub fn free(self) {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: raw came from RocksDB's malloc and is freed exactly once here.
        unsafe { rocksdb_free(raw.cast()) }
    }
}

impl Drop for MallocValue {
    fn drop(&mut self) {
        // SAFETY: leak guard only; see Pinned::drop.
        unsafe { rocksdb_free(self.raw.cast()) }
    }
}

/// An optimistic transaction; must be released with [`Txn::destroy`].
#[must_use = "release with Txn::destroy so the rocksdb_transaction_destroy call is counted"]
pub struct Txn<'db> {
    raw: *mut rocksdb_transaction_t,
    _db: PhantomData<&'db Db>,
}

impl Txn<'_> {
    pub fn get_pinned_cf(
        &mut self,
        ro: &ReadOptions,
        cf: Cf<'_>,
        key: &[u8],
    ) -> Result<Option<Pinned>, RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: live transaction, used from one thread only (`&mut self`).
        let p = unsafe {
            rocksdb_transaction_get_pinned_cf(
                self.raw,
                ro.0,
                cf.raw,
                cptr(key),
                key.len(),
                &mut err,
            )
        };
        pinned_result(p, err)
    }

    pub fn get_for_update_cf(
        &mut self,
        ro: &ReadOptions,
        cf: Cf<'_>,
        key: &[u8],
    ) -> Result<Option<MallocValue>, RocksError> {
        let mut err = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: as in get_pinned_cf.
        let p = unsafe {
            rocksdb_transaction_get_for_update_cf(
                self.raw,
                ro.0,
                cf.raw,
                cptr(key),
                key.len(),
                &mut len,
                1,
                &mut err,
            )
        };
        malloc_result(p, len, err)
    }

    pub fn put_cf(&mut self, cf: Cf<'_>, key: &[u8], val: &[u8]) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: as in get_pinned_cf; key/value are copied into the transaction's batch.
        unsafe {
            rocksdb_transaction_put_cf(
                self.raw,
                cf.raw,
                cptr(key),
                key.len(),
                cptr(val),
                val.len(),
                &mut err,
            )
        };
        check(err)
    }

    pub fn delete_cf(&mut self, cf: Cf<'_>, key: &[u8]) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: as in put_cf.
        unsafe { rocksdb_transaction_delete_cf(self.raw, cf.raw, cptr(key), key.len(), &mut err) };
        check(err)
    }

    pub fn commit(&mut self) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: live transaction.
        unsafe { rocksdb_transaction_commit(self.raw, &mut err) };
        check(err)
    }

    pub fn destroy(self) {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: freed exactly once; an uncommitted transaction is rolled back by RocksDB.
        unsafe { rocksdb_transaction_destroy(raw) }
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        // SAFETY: leak guard only; see Pinned::drop.
        unsafe { rocksdb_transaction_destroy(self.raw) }
    }
}

/// A write batch; must be released with [`WriteBatch::destroy`].
#[must_use = "release with WriteBatch::destroy so the rocksdb_writebatch_destroy call is counted"]
pub struct WriteBatch {
    raw: *mut rocksdb_writebatch_t,
}

impl WriteBatch {
    #[allow(clippy::new_without_default)] // each construction is a counted C call
    pub fn new() -> WriteBatch {
        // SAFETY: plain constructor.
        WriteBatch {
            raw: unsafe { rocksdb_writebatch_create() },
        }
    }

    pub fn put(&mut self, key: &[u8], val: &[u8]) {
        // SAFETY: live batch; key/value copied.
        unsafe { rocksdb_writebatch_put(self.raw, cptr(key), key.len(), cptr(val), val.len()) }
    }

    pub fn put_cf(&mut self, cf: Cf<'_>, key: &[u8], val: &[u8]) {
        // SAFETY: as in put.
        unsafe {
            rocksdb_writebatch_put_cf(self.raw, cf.raw, cptr(key), key.len(), cptr(val), val.len())
        }
    }

    pub fn delete(&mut self, key: &[u8]) {
        // SAFETY: as in put.
        unsafe { rocksdb_writebatch_delete(self.raw, cptr(key), key.len()) }
    }

    pub fn delete_cf(&mut self, cf: Cf<'_>, key: &[u8]) {
        // SAFETY: as in put.
        unsafe { rocksdb_writebatch_delete_cf(self.raw, cf.raw, cptr(key), key.len()) }
    }

    pub fn destroy(self) {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: freed exactly once.
        unsafe { rocksdb_writebatch_destroy(raw) }
    }
}

impl Drop for WriteBatch {
    fn drop(&mut self) {
        // SAFETY: leak guard only; see Pinned::drop.
        unsafe { rocksdb_writebatch_destroy(self.raw) }
    }
}

/// A DB iterator; must be released with [`DbIter::destroy`].
#[must_use = "release with DbIter::destroy so the rocksdb_iter_destroy call is counted"]
pub struct DbIter<'db> {
    raw: *mut rocksdb_iterator_t,
    _db: PhantomData<&'db Db>,
}

impl DbIter<'_> {
    pub fn valid(&self) -> bool {
        // SAFETY: live iterator.
        unsafe { rocksdb_iter_valid(self.raw) != 0 }
    }

    pub fn seek(&mut self, key: &[u8]) {
        // SAFETY: live iterator; the key is copied.
        unsafe { rocksdb_iter_seek(self.raw, cptr(key), key.len()) }
    }

    pub fn seek_for_prev(&mut self, key: &[u8]) {
        // SAFETY: as in seek.
        unsafe { rocksdb_iter_seek_for_prev(self.raw, cptr(key), key.len()) }
    }

    pub fn seek_to_first(&mut self) {
        // SAFETY: live iterator.
        unsafe { rocksdb_iter_seek_to_first(self.raw) }
    }

    pub fn seek_to_last(&mut self) {
        // SAFETY: live iterator.
        unsafe { rocksdb_iter_seek_to_last(self.raw) }
    }

    /// Advances; the caller must have checked [`DbIter::valid`] (RocksDB asserts on it).
    pub fn next(&mut self) {
        // SAFETY: live iterator, valid per the caller's check.
        unsafe { rocksdb_iter_next(self.raw) }
    }

    pub fn status(&self) -> Result<(), RocksError> {
        let mut err = ptr::null_mut();
        // SAFETY: live iterator.
        unsafe { rocksdb_iter_get_error(self.raw, &mut err) };
        check(err)
    }

    pub fn destroy(self) {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: freed exactly once, before the DB (enforced by the lifetime).
        unsafe { rocksdb_iter_destroy(raw) }
    }
}

impl Drop for DbIter<'_> {
    fn drop(&mut self) {
        // SAFETY: leak guard only; see Pinned::drop.
        unsafe { rocksdb_iter_destroy(self.raw) }
    }
}

pub struct ReadOptions(*mut rocksdb_readoptions_t);

// SAFETY: never mutated after construction; RocksDB only reads it during calls.
unsafe impl Send for ReadOptions {}
// SAFETY: see above.
unsafe impl Sync for ReadOptions {}

impl ReadOptions {
    #[allow(clippy::new_without_default)]
    pub fn new() -> ReadOptions {
        // SAFETY: plain constructor.
        ReadOptions(unsafe { rocksdb_readoptions_create() })
    }
}

impl Drop for ReadOptions {
    fn drop(&mut self) {
        // SAFETY: destroyed exactly once.
        unsafe { rocksdb_readoptions_destroy(self.0) }
    }
}

pub struct WriteOptions(*mut rocksdb_writeoptions_t);

// SAFETY: never mutated after construction; RocksDB only reads it during calls.
unsafe impl Send for WriteOptions {}
// SAFETY: see above.
unsafe impl Sync for WriteOptions {}

impl WriteOptions {
    /// `sync`: fsync the WAL before a write returns.
    pub fn new(sync: bool) -> WriteOptions {
        // SAFETY: plain constructor, then configured before being shared.
        unsafe {
            let raw = rocksdb_writeoptions_create();
            rocksdb_writeoptions_set_sync(raw, u8::from(sync));
            WriteOptions(raw)
        }
    }
}

impl Drop for WriteOptions {
    fn drop(&mut self) {
        // SAFETY: destroyed exactly once.
        unsafe { rocksdb_writeoptions_destroy(self.0) }
    }
}

pub struct TxnOptions(*mut rocksdb_optimistictransaction_options_t);

// SAFETY: never mutated after construction; RocksDB only reads it during begin.
unsafe impl Send for TxnOptions {}
// SAFETY: see above.
unsafe impl Sync for TxnOptions {}

impl TxnOptions {
    #[allow(clippy::new_without_default)]
    pub fn new() -> TxnOptions {
        // SAFETY: plain constructor.
        TxnOptions(unsafe { rocksdb_optimistictransaction_options_create() })
    }
}

impl Drop for TxnOptions {
    fn drop(&mut self) {
        // SAFETY: destroyed exactly once.
        unsafe { rocksdb_optimistictransaction_options_destroy(self.0) }
    }
}

/// Set by SIGTERM/SIGINT; the workload polls it.
pub static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: c_int) {
    // Only an atomic store: async-signal-safe.
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Routes SIGTERM and SIGINT to [`STOP_REQUESTED`] instead of killing the process, so that the
/// ground truth is still written when the measured phase is cut short.
pub fn install_stop_handlers() -> std::io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only performs an atomic store; sa_mask is initialised by sigemptyset.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The calling thread's CPU time so far, in ns (user + kernel; 0 if the clock is unavailable).
/// Unlike /proc's figures, this clock is brought up to date when read, not only at ticks.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
