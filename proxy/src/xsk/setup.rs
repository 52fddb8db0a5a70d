//! Start-up of the AF_XDP path (`workers.io`): the sockets are opened before the workers
//! start (each worker takes its port from its handle), and placed in the XDP program's
//! socket map once the program is attached.

use super::port;
use super::socket::BindMode;
use crate::config::{Config, IoPath};
use crate::steering::{self, GuardMode, Redirect, XdpGuard};
use crate::worker::WorkerHandle;
use siplb_common::bpf as shared;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;

/// The sockets to place in the XDP program's map: (map index, fd); and the address they
/// take datagrams for.
#[derive(Debug, Default)]
pub struct Placement {
    pub sockets: Vec<(u32, RawFd)>,
    addr: Option<Ipv4Addr>,
    workers: u32,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// What the XDP program is to do with what it lets through: on to these sockets.
    pub fn redirect(&self, key: u32) -> Option<Redirect<'static>> {
        Some(Redirect::Xsk {
            key,
            workers: self.workers,
            addr: self.addr?,
            max_frame: port::MAX_FRAME,
        })
    }

    /// Puts every socket in the guard's map.
    pub fn place(&self, guard: &XdpGuard) -> Result<(), String> {
        for (index, fd) in &self.sockets {
            guard.place_xsk(*index, *fd)?;
        }
        Ok(())
    }
}

/// Opens the AF_XDP sockets `cfg.io` asks for and hands each worker its port. `Err` when
/// `io = "af_xdp"` and they cannot be opened; with `"auto"` that is a warning and the
/// io_uring path alone.
pub fn open(cfg: &Config, workers: &[Arc<WorkerHandle>]) -> Result<Placement, String> {
    if cfg.io == IoPath::IoUring
        || cfg.steering == crate::config::SteeringMode::Off
        || cfg.xdp_mode.is_none()
    {
        return Ok(Placement::default());
    }
    match try_open(cfg, workers) {
        Ok(p) => Ok(p),
        Err(e) if cfg.io == IoPath::AfXdp => Err(format!("workers.io = \"af_xdp\": {e}")),
        Err(e) => {
            tracing::warn!("workers.io = \"auto\": AF_XDP not used ({e}); io_uring only");
            Ok(Placement::default())
        }
    }
}

fn try_open(cfg: &Config, workers: &[Arc<WorkerHandle>]) -> Result<Placement, String> {
    let SocketAddr::V4(addr) = cfg.listen else {
        return Err(format!("the listen address {} is not IPv4", cfg.listen));
    };
    if addr.ip().is_unspecified() {
        return Err(
            "the listen address is 0.0.0.0: AF_XDP needs the address of one interface".into(),
        );
    }
    let iface = steering::interface_of(cfg.listen.ip())
        .ok_or_else(|| format!("no interface holds {}", addr.ip()))?;
    // Generic XDP delivers copies: a zero-copy socket would get nothing.
    let mode = match cfg.xdp_mode {
        Some(GuardMode::Generic) => BindMode::Copy,
        _ => BindMode::Auto,
    };
    let opened = port::open(&iface, addr, workers.len() as u32, mode)
        .map_err(|e| format!("AF_XDP sockets on {iface}: {e}"))?;
    let mut placement = Placement {
        sockets: Vec::new(),
        addr: Some(*addr.ip()),
        workers: workers.len() as u32,
    };
    let sockets = opened.ports.len();
    let per_queue = (opened.ports.len() as u32 / opened.queues.max(1)).max(1);
    for (k, p) in opened.ports.into_iter().enumerate() {
        let k = k as u32;
        placement.sockets.push((k, p.fd()));
        // The first socket of each queue also takes that queue's datagrams for owners
        // bound to another queue.
        if k.is_multiple_of(per_queue) {
            placement
                .sockets
                .push((shared::XSK_QUEUE_BASE + k / per_queue, p.fd()));
        }
        *workers[k as usize]
            .xsk
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(p);
    }
    tracing::info!(
        "AF_XDP: {} worker sockets on {iface} ({} queue{}, {}); what the XDP program \
         redirects bypasses nftables and tcpdump",
        sockets,
        opened.queues,
        if opened.queues == 1 { "" } else { "s" },
        if opened.zero_copy {
            "zero-copy"
        } else {
            "copy mode"
        }
    );
    Ok(placement)
}
