//! The AF_XDP data path's building blocks: a thin layer over the kernel's AF_XDP ABI (the
//! UMEM, sockets sharing it, their rings; `libc`'s definitions of `linux/if_xdp.h`) and the
//! Ethernet/IPv4/UDP frames workers read and write in user space. Why a layer of our own and
//! not a crate: `docs/decisions/0005-af-xdp-rings.md`.

pub mod frame;
pub mod ring;
pub mod socket;

pub use socket::{BindMode, Umem, UmemRings, Xsk, XskStats, open_group};
