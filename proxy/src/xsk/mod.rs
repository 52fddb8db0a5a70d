//! The AF_XDP data path's building blocks: a thin layer over the kernel's AF_XDP ABI (the
//! UMEM, sockets sharing it, their rings; `libc`'s definitions of `linux/if_xdp.h`), the
//! Ethernet/IPv4/UDP frames workers read and write in user space, the next hops from the
//! kernel's tables, and a worker's port over all of it. Why a layer of our own and not a
//! crate: `docs/decisions/0005-af-xdp-rings.md`.

pub mod frame;
pub mod neigh;
pub mod port;
pub mod ring;
pub mod setup;
pub mod socket;

pub use port::{Opened, XskPort};
pub use socket::{BindMode, Umem, UmemRings, Xsk, XskStats, open_group};
