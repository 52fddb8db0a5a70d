//! BPF steering (DESIGN §1): siplb's `sk_reuseport` program picks, for every datagram that
//! reaches the workers' `SO_REUSEPORT` group, the socket of the worker that owns its Call-ID,
//! with the same hash as the workers (`siplb_common`). Then no datagram needs a hand-off.
//!
//! The BPF object is built from `ebpf/` (`cargo xtask build-ebpf`) and committed at
//! `proxy/bpf/siplb.bpf.o`, so that siplb builds and runs without the BPF toolchain;
//! `proxy/bpf/BUILD.md` records what it was built from.

use aya::maps::{Array, ReusePortSockArray};
use aya::programs::SkReuseport;
use aya::{Ebpf, include_bytes_aligned};
use siplb_common::bpf as shared;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// The committed BPF object.
pub static OBJECT: &[u8] = include_bytes_aligned!("../bpf/siplb.bpf.o");

/// A socket fd owned by a worker, borrowed while the map takes its own reference to it.
struct Socket(RawFd);

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The steering program, loaded and attached to the workers' socket group.
pub struct BpfSteering {
    _ebpf: Ebpf,
    group: RawFd,
}

impl BpfSteering {
    /// Loads the program, puts the workers' sockets (`sockets[k]` = worker k's) and the hash
    /// key into its maps and attaches it to their group. The error says what failed, for the
    /// log line of `steering = "auto"`.
    pub fn attach(sockets: &[RawFd], hash_key: u32) -> Result<BpfSteering, String> {
        if sockets.is_empty() || sockets.len() > shared::MAX_WORKERS as usize {
            return Err(format!(
                "{} workers (1 to {})",
                sockets.len(),
                shared::MAX_WORKERS
            ));
        }
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| format!("loading the BPF object: {e}"))?;
        {
            let map = ebpf
                .map_mut(shared::SOCKETS_MAP)
                .ok_or("no socket map in the BPF object")?;
            let mut socks = ReusePortSockArray::try_from(map).map_err(|e| e.to_string())?;
            for (k, fd) in sockets.iter().enumerate() {
                socks
                    .set(k as u32, &Socket(*fd), 0)
                    .map_err(|e| format!("socket map entry {k}: {e}"))?;
            }
        }
        {
            let map = ebpf
                .map_mut(shared::STEER_MAP)
                .ok_or("no steering map in the BPF object")?;
            let mut steer: Array<_, u32> = Array::try_from(map).map_err(|e| e.to_string())?;
            steer
                .set(shared::STEER_HASH_KEY, hash_key, 0)
                .map_err(|e| e.to_string())?;
            steer
                .set(shared::STEER_WORKERS, sockets.len() as u32, 0)
                .map_err(|e| e.to_string())?;
        }
        let prog: &mut SkReuseport = ebpf
            .program_mut(shared::STEER_PROGRAM)
            .ok_or("no steering program in the BPF object")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        prog.load()
            .map_err(|e| format!("loading {}: {e}", shared::STEER_PROGRAM))?;
        // SAFETY: the fd is a worker's socket, open for the life of the proxy.
        let group = unsafe { BorrowedFd::borrow_raw(sockets[0]) };
        prog.attach(group)
            .map_err(|e| format!("attaching to the SO_REUSEPORT group: {e}"))?;
        Ok(BpfSteering {
            _ebpf: ebpf,
            group: sockets[0],
        })
    }

    /// Detaches the program from the group (the sockets stay open).
    pub fn detach(self) {
        // SAFETY: as in `attach`; called before the workers close their sockets.
        let group = unsafe { BorrowedFd::borrow_raw(self.group) };
        if let Err(e) = SkReuseport::detach(group) {
            tracing::warn!("detaching the steering program: {e}");
        }
    }
}
