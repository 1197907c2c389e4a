//! Per-CPU maps read whole in a few system calls. One lookup per element (and, for a hash,
//! one `get_next_key` per element) made every report cost hundreds of `bpf(2)` calls and as
//! many allocations; `BPF_MAP_LOOKUP_BATCH` (Linux 5.6) hands over many elements with every
//! CPU's value at once, into buffers kept from one report to the next. Kernels without batch
//! operations get the same result one element at a time.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Pod,
    maps::{Map, MapData, MapError},
    sys::SyscallError,
};
use aya_obj::generated::{bpf_attr, bpf_cmd};

use crate::probe::{ENOTSUPP, Engine, ProbeError, sys_bpf};

/// At most this many bytes of values are fetched per call (a bound on the buffers whatever
/// the number of CPUs).
const BATCH_BYTES: usize = 64 << 10;

/// A per-CPU array or hash map with its read buffers.
pub struct PerCpuMap<K: Pod, V: Pod> {
    name: &'static str,
    map: MapData,
    max_entries: usize,
    cpus: usize,
    /// Elements per batch call.
    chunk: usize,
    keys: Vec<K>,
    /// `chunk` elements of `cpus` values each, as the kernel lays them out.
    values: Vec<V>,
    /// False once the kernel refused a batch call: one element at a time from then on.
    batch: bool,
}

impl<K: Pod, V: Pod> PerCpuMap<K, V> {
    /// Takes per-CPU map `name` out of `engine`.
    pub fn new(engine: &mut Engine, name: &'static str) -> Result<Self, ProbeError> {
        // The kernel rounds each CPU's value up to 8 bytes; ours are made of u64s.
        const { assert!(size_of::<V>().is_multiple_of(8) && size_of::<V>() > 0) };
        let err = ProbeError::map(name);
        let map = match engine.take_map(name)? {
            Map::PerCpuArray(d) | Map::PerCpuHashMap(d) | Map::PerCpuLruHashMap(d) => d,
            _ => return Err(ProbeError::Map { name, source: None }),
        };
        let info = map.info().map_err(&err)?;
        if info.key_size() as usize != size_of::<K>() {
            return Err(err(MapError::InvalidKeySize {
                size: info.key_size() as usize,
                expected: size_of::<K>(),
            }));
        }
        if info.value_size() as usize != size_of::<V>() {
            return Err(err(MapError::InvalidValueSize {
                size: info.value_size() as usize,
                expected: size_of::<V>(),
            }));
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, io_error)| {
            err(MapError::SyscallError(SyscallError {
                call: "nr_cpus",
                io_error,
            }))
        })?;
        let max_entries = info.max_entries() as usize;
        let chunk = (BATCH_BYTES / (cpus * size_of::<V>())).clamp(8, max_entries.max(8));
        let mut m = PerCpuMap {
            name,
            map,
            max_entries,
            cpus,
            chunk: 0,
            keys: Vec::new(),
            values: Vec::new(),
            batch: true,
        };
        m.resize(chunk);
        Ok(m)
    }

    fn resize(&mut self, chunk: usize) {
        self.chunk = chunk;
        // SAFETY: Pod types are plain bytes; all zeroes is a valid value.
        let (k, v) = unsafe { (std::mem::zeroed::<K>(), std::mem::zeroed::<V>()) };
        self.keys = vec![k; chunk];
        self.values = vec![v; chunk * self.cpus];
    }

    /// Calls `f` with every element's key and its value on each possible CPU.
    pub fn for_each(&mut self, mut f: impl FnMut(K, &[V])) -> Result<(), ProbeError> {
        if self.batch {
            match self.read_batches(&mut f) {
                Ok(true) => return Ok(()),
                Ok(false) => self.batch = false,
                Err(e) => return Err(self.error("bpf_map_lookup_batch", e)),
            }
        }
        self.read_one_by_one(&mut f)
    }

    /// False when the kernel refused the first call (nothing was handed to `f`).
    fn read_batches(&mut self, f: &mut impl FnMut(K, &[V])) -> io::Result<bool> {
        // The cursor: a key of an array, a bucket of a hash; u32 for both.
        let (mut cursor, mut next) = (0u32, 0u32);
        let mut first = true;
        let mut delivered = 0;
        loop {
            // SAFETY: bpf_attr is plain old data; zero is the default of every field.
            let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
            // SAFETY: writing the batch member of the zeroed union.
            unsafe {
                let b = &mut attr.batch;
                b.in_batch = if first { 0 } else { &raw const cursor as u64 };
                b.out_batch = &raw mut next as u64;
                b.keys = self.keys.as_mut_ptr() as u64;
                b.values = self.values.as_mut_ptr() as u64;
                b.count = self.chunk as u32;
                b.map_fd = self.map.fd().as_fd().as_raw_fd() as u32;
            }
            let res = bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr);
            // SAFETY: the kernel wrote back the count of the batch member.
            let n = unsafe { attr.batch.count } as usize;
            let end = match res {
                Ok(()) => false,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                // A hash bucket holds more elements than one call asked for.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && n == 0 => {
                    self.resize(self.chunk * 2);
                    continue;
                }
                Err(e) if first && unsupported(&e) => {
                    tracing::debug!(
                        "{}: no batch lookups ({e}); one element at a time",
                        self.name
                    );
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            for (i, key) in self.keys[..n.min(self.chunk)].iter().enumerate() {
                f(*key, &self.values[i * self.cpus..(i + 1) * self.cpus]);
            }
            delivered += n;
            // A full map is read whole: no call just to hear there is nothing more.
            if end || delivered >= self.max_entries {
                return Ok(true);
            }
            cursor = next;
            first = false;
        }
    }

    fn read_one_by_one(&mut self, f: &mut impl FnMut(K, &[V])) -> Result<(), ProbeError> {
        let fd = self.map.fd().as_fd().as_raw_fd() as u32;
        let mut prev: Option<K> = None;
        // Bounded: a hash's walk restarts when its previous key was deleted meanwhile.
        for _ in 0..self.max_entries {
            // SAFETY: bpf_attr is plain old data; zero is the default of every field.
            let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
            // SAFETY: writing the element member of the zeroed union.
            unsafe {
                let u = &mut attr.__bindgen_anon_2;
                u.map_fd = fd;
                u.key = prev.as_ref().map_or(0, |k| k as *const K as u64);
                u.__bindgen_anon_1.next_key = self.keys.as_mut_ptr() as u64;
            }
            match bpf(bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut attr) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(self.error("bpf_map_get_next_key", e)),
            }
            let key = self.keys[0];
            // SAFETY: as above.
            let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
            // SAFETY: as above; `values` holds at least one element of every CPU.
            unsafe {
                let u = &mut attr.__bindgen_anon_2;
                u.map_fd = fd;
                u.key = &raw const key as u64;
                u.__bindgen_anon_1.value = self.values.as_mut_ptr() as u64;
            }
            match bpf(bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) {
                Ok(()) => f(key, &self.values[..self.cpus]),
                // Deleted since its key was read.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(self.error("bpf_map_lookup_elem", e)),
            }
            prev = Some(key);
        }
        Ok(())
    }

    fn error(&self, call: &'static str, io_error: io::Error) -> ProbeError {
        ProbeError::map(self.name)(MapError::SyscallError(SyscallError { call, io_error }))
    }
}

/// A kernel without batch operations (before 5.6), or without them for this map type.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<()> {
    sys_bpf(cmd, attr).map(drop)
}

#[cfg(test)]
mod tests {
    use aya::maps::{PerCpuArray, PerCpuHashMap, PerCpuValues};
    use ckb_probe_common::{config::Config, hist::Histogram};

    use super::*;

    fn engine() -> Engine {
        Engine::load(Config {
            tgid: 0,
            flags: 0,
            slow_threshold_ns: u64::MAX,
        })
        .expect("loading the eBPF object (run as root)")
    }

    /// A distinct histogram for each (key, CPU).
    fn per_cpu(key: u32) -> PerCpuValues<Histogram> {
        let cpus = aya::util::nr_cpus().unwrap() as u64;
        let hist = |seed: u64| -> Histogram { std::array::from_fn(|i| seed * 1_000 + i as u64) };
        PerCpuValues::try_from(
            (0..cpus)
                .map(|c| hist(u64::from(key) * 100 + c))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    /// Every element, by batches and one at a time; both must see what was written.
    fn both_ways<K: Pod + Ord, V: Pod>(m: &mut PerCpuMap<K, V>) -> [Vec<(K, Vec<V>)>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        for (i, batch) in [true, false].into_iter().enumerate() {
            m.batch = batch;
            m.for_each(|k, v| out[i].push((k, v.to_vec())))
                .expect("read");
            out[i].sort_by_key(|e| e.0);
        }
        out
    }

    #[test]
    fn array_read_whole_over_several_calls() {
        let mut engine = engine();
        let len = {
            let mut a: PerCpuArray<_, Histogram> =
                PerCpuArray::try_from(engine.ebpf.map_mut("ROCKS_HIST").unwrap()).unwrap();
            for i in 0..a.len() {
                a.set(i, per_cpu(i), 0).unwrap();
            }
            a.len()
        };
        let mut m = PerCpuMap::<u32, Histogram>::new(&mut engine, "ROCKS_HIST").unwrap();
        assert!(m.chunk < len as usize, "one call would read it all");
        let [batched, single] = both_ways(&mut m);
        assert_eq!(batched.len(), len as usize);
        for (i, (k, v)) in batched.iter().enumerate() {
            assert_eq!(*k, i as u32);
            assert_eq!(v[..], per_cpu(i as u32)[..]);
        }
        assert!(batched == single);
    }

    #[test]
    fn hash_read_whole_over_several_calls() {
        let mut engine = engine();
        let keys: Vec<u32> = (0..40).map(|i| i * 7 + 3).collect();
        {
            let mut h: PerCpuHashMap<_, u32, Histogram> =
                PerCpuHashMap::try_from(engine.ebpf.map_mut("SYS_HIST").unwrap()).unwrap();
            for &k in &keys {
                h.insert(k, per_cpu(k), 0).unwrap();
            }
        }
        let mut m = PerCpuMap::<u32, Histogram>::new(&mut engine, "SYS_HIST").unwrap();
        assert!(m.chunk < keys.len());
        let [batched, single] = both_ways(&mut m);
        assert_eq!(batched.iter().map(|(k, _)| *k).collect::<Vec<_>>(), keys);
        for (k, v) in &batched {
            assert_eq!(v[..], per_cpu(*k)[..]);
        }
        assert!(batched == single);
    }
}
