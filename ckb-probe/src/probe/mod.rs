//! Probe lifecycle: the embedded kernel object, loading it, run-time configuration, attaching
//! each layer's programs. Detaching is dropping the [`Engine`]: every link is a file descriptor
//! owned by it (nothing is pinned), so even a killed ckb-probe leaves no probe behind.

pub mod net;
pub mod rocksdb;
pub mod syscall;

use aya::{Ebpf, EbpfLoader, maps::Array};
use ckb_probe_common::config::Config;

/// The kernel programs, built by build.rs from ckb-probe-ebpf.
static BPF_ELF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ckb-probe-bpf"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this ckb-probe binary was built without its eBPF programs (CKB_PROBE_SKIP_EBPF=1); \
         run scripts/bootstrap.sh, then rebuild"
    )]
    NotEmbedded,
    #[error(
        "permission denied loading eBPF programs: run as root, or grant CAP_BPF and CAP_PERFMON \
         (`ckb-probe check` lists what is missing)"
    )]
    Permission,
    #[error("loading the eBPF object failed; run `ckb-probe check` to see what this kernel lacks")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program {name} could not be loaded or attached")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name} is missing or unusable")]
    Map {
        name: &'static str,
        #[source]
        source: Option<aya::maps::MapError>,
    },
    #[error("none of the traced functions could be attached in {object}")]
    NothingAttached { object: String },
}

impl ProbeError {
    /// Maps an aya map error on map `name` (for `map_err`).
    pub fn map(name: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
        move |e| ProbeError::Map {
            name,
            source: Some(e),
        }
    }
}

/// One loaded eBPF object shared by every layer of one ckb-probe run.
pub struct Engine {
    pub ebpf: Ebpf,
}

fn is_permission(e: &aya::EbpfError) -> bool {
    let text = format!("{e:?}");
    text.contains("EPERM") || text.contains("PermissionDenied") || text.contains("os error 1)")
}

impl Engine {
    /// Loads the embedded object (maps are created; programs are loaded per layer on attach).
    pub fn load(config: Config) -> Result<Self, ProbeError> {
        if BPF_ELF.is_empty() {
            return Err(ProbeError::NotEmbedded);
        }
        raise_memlock();
        let ebpf = EbpfLoader::new().load(BPF_ELF).map_err(|e| {
            if is_permission(&e) {
                ProbeError::Permission
            } else {
                ProbeError::Load(e)
            }
        })?;
        let mut engine = Engine { ebpf };
        engine.set_config(config)?;
        Ok(engine)
    }

    /// Writes the run-time configuration every program reads on each event.
    pub fn set_config(&mut self, config: Config) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut("CONFIG").ok_or(ProbeError::Map {
            name: "CONFIG",
            source: None,
        })?;
        let mut array: Array<_, Config> =
            Array::try_from(map).map_err(ProbeError::map("CONFIG"))?;
        array.set(0, config, 0).map_err(ProbeError::map("CONFIG"))
    }

    /// Takes a map out of the object as its typed wrapper, for a collector to own.
    pub fn map<T>(&mut self, name: &'static str) -> Result<T, ProbeError>
    where
        T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
    {
        T::try_from(self.take_map(name)?).map_err(ProbeError::map(name))
    }

    /// Takes a map out of the object for a collector to own.
    pub fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, ProbeError> {
        self.ebpf
            .take_map(name)
            .ok_or(ProbeError::Map { name, source: None })
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones use memcg and ignore it.
/// Failing to raise it (no CAP_SYS_RESOURCE, as in some sandboxes) is therefore only logged.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}
