//! AF_XDP sockets over one UMEM: the memory area frames live in, registered with the first
//! socket of a group, and shared (`XDP_SHARED_UMEM`) by the others bound to the same
//! interface queue. Such a group has one fill ring and one completion ring, those of the
//! first socket ([`UmemRings`]); each socket has its own RX and TX ring ([`Xsk`]).

use super::ring::Ring;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// How a group binds to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy where the driver has it, copy otherwise (the kernel's choice).
    Auto,
    Copy,
    ZeroCopy,
}

/// The memory frames live in: `frames` frames of `frame_size` bytes, page-aligned.
pub struct Umem {
    area: NonNull<u8>,
    len: usize,
    frame_size: u32,
    frames: u32,
}

// SAFETY: the area is plain memory; who writes which frame is decided by the rings' owners.
unsafe impl Send for Umem {}
// SAFETY: as above.
unsafe impl Sync for Umem {}

impl Umem {
    pub fn new(frames: u32, frame_size: u32) -> io::Result<Umem> {
        assert!(frame_size.is_power_of_two() && (2048..=4096).contains(&frame_size));
        let len = frames as usize * frame_size as usize;
        // SAFETY: a fresh private anonymous mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Umem {
            area: NonNull::new(p as *mut u8).expect("mmap returned a null mapping"),
            len,
            frame_size,
            frames,
        })
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The address (UMEM offset) of frame `i`.
    pub fn addr(&self, i: u32) -> u64 {
        u64::from(i) * u64::from(self.frame_size)
    }

    /// The `len` bytes at UMEM address `addr`.
    ///
    /// # Safety
    /// The frame holding them belongs to the caller (taken from the RX ring and not yet
    /// given back to the fill ring); nothing writes it meanwhile.
    pub unsafe fn bytes(&self, addr: u64, len: usize) -> &[u8] {
        assert!(addr as usize + len <= self.len);
        // SAFETY: within the area, as checked; the caller owns the frame.
        unsafe { std::slice::from_raw_parts(self.area.as_ptr().add(addr as usize), len) }
    }

    /// The whole frame at address `addr` (frame-aligned), to write into.
    ///
    /// # Safety
    /// The frame belongs to the caller (a free frame it took); nobody else touches it until
    /// it is handed to the TX ring.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn frame_mut(&self, addr: u64) -> &mut [u8] {
        let start = addr - addr % u64::from(self.frame_size);
        assert!(start as usize + self.frame_size as usize <= self.len);
        // SAFETY: within the area; the caller owns the frame exclusively.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.area.as_ptr().add(start as usize),
                self.frame_size as usize,
            )
        }
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: our mapping; the sockets that used it are closed before (they hold an
        // `Arc` of the group that holds this).
        unsafe { libc::munmap(self.area.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// The fill and completion rings of a group (those of its first socket).
pub struct UmemRings {
    pub fill: Ring<u64>,
    pub completion: Ring<u64>,
    /// The first socket's fd, for wake-ups of the fill ring.
    fd: RawFd,
}

impl UmemRings {
    /// Wakes the kernel to take from the fill ring when it asks for it (`need_wakeup`).
    pub fn wake(&self) {
        if self.fill.needs_wakeup() {
            // SAFETY: a zero-length non-blocking receive on our socket.
            unsafe {
                libc::recvfrom(
                    self.fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }
}

/// One AF_XDP socket: its RX and TX rings.
pub struct Xsk {
    fd: OwnedFd,
    pub rx: Ring<libc::xdp_desc>,
    pub tx: Ring<libc::xdp_desc>,
}

impl AsRawFd for Xsk {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// What the kernel counted for a socket (`XDP_STATISTICS`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XskStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

impl Xsk {
    /// Asks the kernel to send what the TX ring holds. Copy mode needs it for every batch;
    /// zero-copy only when the ring says `need_wakeup`.
    pub fn kick(&self) {
        // SAFETY: a zero-length non-blocking send on our socket.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            // EAGAIN/EBUSY: the kernel is still sending the last batch; ENOBUFS: the
            // completion ring is full. Either way the frames stay queued for the next kick.
            let e = io::Error::last_os_error();
            if !matches!(
                e.raw_os_error(),
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)
            ) {
                tracing::debug!("AF_XDP kick: {e}");
            }
        }
    }

    pub fn stats(&self) -> io::Result<XskStats> {
        let s: libc::xdp_statistics = getsockopt(self.fd.as_raw_fd(), libc::XDP_STATISTICS)?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }

    /// Whether the socket runs zero-copy (`XDP_OPTIONS`).
    pub fn zero_copy(&self) -> bool {
        getsockopt::<libc::xdp_options>(self.fd.as_raw_fd(), libc::XDP_OPTIONS)
            .is_ok_and(|o| o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
    }
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, v: &T, what: &str) -> io::Result<()> {
    // SAFETY: `v` is a valid value of the option's type.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("AF_XDP {what}: {e}")));
    }
    Ok(())
}

fn new_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("AF_XDP socket: {e}")));
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads AF_XDP socket option `opt`, a plain-data `T`.
fn getsockopt<T: Copy>(fd: RawFd, opt: libc::c_int) -> io::Result<T> {
    let mut v = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` has room for `len` bytes.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_XDP, opt, v.as_mut_ptr().cast(), &mut len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed plain data, filled (in part or whole) by the kernel.
    Ok(unsafe { v.assume_init() })
}

fn mmap_offsets(fd: RawFd) -> io::Result<libc::xdp_mmap_offsets> {
    getsockopt(fd, libc::XDP_MMAP_OFFSETS)
}

fn bind(fd: RawFd, ifindex: u32, queue: u32, flags: u16, shared_fd: RawFd) -> io::Result<()> {
    let sa = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: if shared_fd >= 0 { shared_fd as u32 } else { 0 },
    };
    // SAFETY: `sa` is a valid sockaddr_xdp of the length given.
    let r = unsafe {
        libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("binding an AF_XDP socket to interface {ifindex} queue {queue}: {e}"),
        ));
    }
    Ok(())
}

/// Opens `count` sockets on queue `queue` of interface `ifindex` over `umem`: the first
/// registers the UMEM and owns the fill and completion rings, the others share it. `ring`
/// is the size of every ring (a power of two).
pub fn open_group(
    umem: &Umem,
    ifindex: u32,
    queue: u32,
    count: usize,
    ring: u32,
    mode: BindMode,
) -> io::Result<(Vec<Xsk>, UmemRings)> {
    assert!(count >= 1 && ring.is_power_of_two());
    let first = new_socket()?;
    let reg = libc::xdp_umem_reg {
        addr: umem.area.as_ptr() as u64,
        len: umem.len as u64,
        chunk_size: umem.frame_size,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setsockopt(
        first.as_raw_fd(),
        libc::XDP_UMEM_REG,
        &reg,
        "UMEM registration",
    )?;
    setsockopt(
        first.as_raw_fd(),
        libc::XDP_UMEM_FILL_RING,
        &ring,
        "fill ring",
    )?;
    setsockopt(
        first.as_raw_fd(),
        libc::XDP_UMEM_COMPLETION_RING,
        &ring,
        "completion ring",
    )?;
    let off = mmap_offsets(first.as_raw_fd())?;
    // SAFETY: the rings just set up on this socket, `ring` entries of u64 each.
    let rings = unsafe {
        UmemRings {
            fill: Ring::map(
                first.as_raw_fd(),
                libc::XDP_UMEM_PGOFF_FILL_RING,
                &off.fr,
                ring,
            )?,
            completion: Ring::map(
                first.as_raw_fd(),
                libc::XDP_UMEM_PGOFF_COMPLETION_RING,
                &off.cr,
                ring,
            )?,
            fd: first.as_raw_fd(),
        }
    };
    let mut sockets = Vec::with_capacity(count);
    let first_fd = first.as_raw_fd();
    let mut first = Some(first);
    for i in 0..count {
        let fd = match first.take() {
            Some(fd) => fd,
            None => new_socket()?,
        };
        setsockopt(fd.as_raw_fd(), libc::XDP_RX_RING, &ring, "RX ring")?;
        setsockopt(fd.as_raw_fd(), libc::XDP_TX_RING, &ring, "TX ring")?;
        let off = mmap_offsets(fd.as_raw_fd())?;
        // SAFETY: the rings just set up on this socket, `ring` descriptors each.
        let (rx, tx) = unsafe {
            (
                Ring::map(
                    fd.as_raw_fd(),
                    libc::XDP_PGOFF_RX_RING as u64,
                    &off.rx,
                    ring,
                )?,
                Ring::map(
                    fd.as_raw_fd(),
                    libc::XDP_PGOFF_TX_RING as u64,
                    &off.tx,
                    ring,
                )?,
            )
        };
        if i == 0 {
            let flags = libc::XDP_USE_NEED_WAKEUP
                | match mode {
                    BindMode::Auto => 0,
                    BindMode::Copy => libc::XDP_COPY,
                    BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
                };
            bind(fd.as_raw_fd(), ifindex, queue, flags, -1)?;
        } else {
            // Sharing sockets take the first one's flags; they may not give their own.
            bind(
                fd.as_raw_fd(),
                ifindex,
                queue,
                libc::XDP_SHARED_UMEM,
                first_fd,
            )?;
        }
        sockets.push(Xsk { fd, rx, tx });
    }
    // `rings` wakes through the first socket's fd, open as long as `sockets[0]` is.
    Ok((sockets, rings))
}
