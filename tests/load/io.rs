//! Datagrams in batches: `recvmmsg` into fixed buffers, `sendmmsg` of what the calls queued
//! (their bytes in one buffer), `poll` to sleep until a socket has something.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Datagrams one `recvmmsg` takes at most.
pub const BATCH: usize = 64;
/// Datagrams one `sendmmsg` takes at most (the kernel's `UIO_MAXIOV`).
const SEND_MAX: usize = 1024;
const SIZE: usize = 4096;

/// Receive buffers and their headers, reused for every batch (no allocation per batch).
pub struct Batch {
    bufs: Vec<[u8; SIZE]>,
    addrs: Vec<libc::sockaddr_in>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    n: usize,
}

fn v4(a: &libc::sockaddr_in) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        u32::from_be(a.sin_addr.s_addr).into(),
        u16::from_be(a.sin_port),
    ))
}

fn sockaddr(a: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = a else {
        panic!("the load generator speaks IPv4 only: {a}");
    };
    // SAFETY: a plain C struct, all zeroes is valid.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            bufs: vec![[0; SIZE]; BATCH],
            // SAFETY (both): plain C structs, all zeroes is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            iov: vec![unsafe { std::mem::zeroed() }; BATCH],
            hdrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            n: 0,
        }
    }

    /// What `socket` has waiting, up to a batch: (source, datagram) each.
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
    ) -> std::io::Result<impl Iterator<Item = (SocketAddr, &[u8])> + '_> {
        // The headers point into this batch's own vectors, which never grow: set again
        // before every call, as the kernel rewrites lengths.
        for i in 0..BATCH {
            self.iov[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: SIZE,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: `hdrs` holds BATCH valid headers over live buffers.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.n = 0;
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {}
                // An ICMP unreachable from an earlier send: not this batch's business.
                std::io::ErrorKind::ConnectionRefused => {}
                _ => return Err(e),
            }
        } else {
            self.n = n as usize;
        }
        Ok((0..self.n).map(|i| {
            let len = self.hdrs[i].msg_len as usize;
            (v4(&self.addrs[i]), &self.bufs[i][..len])
        }))
    }
}

/// Datagrams queued to send, each with the index of the socket it leaves from and its
/// destination. Their bytes share one buffer, so that queuing a datagram allocates nothing
/// once the queue has grown to a run's batch size.
#[derive(Debug, Default)]
pub struct Out {
    bytes: Vec<u8>,
    items: Vec<(usize, SocketAddr, std::ops::Range<usize>)>,
}

impl Out {
    /// Queues a copy of `data`.
    pub fn push(&mut self, socket: usize, dst: SocketAddr, data: &[u8]) {
        self.push_with(socket, dst, |b| b.extend_from_slice(data));
    }

    /// Queues the datagram `write` appends to the buffer it is given.
    pub fn push_with(&mut self, socket: usize, dst: SocketAddr, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.items.push((socket, dst, start..self.bytes.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// (socket index, destination, bytes) of each datagram, in the order queued.
    pub fn iter(&self) -> impl Iterator<Item = (usize, SocketAddr, &[u8])> + '_ {
        self.items
            .iter()
            .map(|(i, dst, r)| (*i, *dst, &self.bytes[r.clone()]))
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }
}

/// The message headers of a `sendmmsg` batch, kept between batches.
#[derive(Default)]
pub struct Sender {
    addrs: Vec<libc::sockaddr_in>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Sender {
    /// Sends every queued datagram, one `sendmmsg` batch per socket (more when a batch is
    /// longer than the kernel takes at once), and empties the queue. A datagram the kernel
    /// refuses (a full buffer) is dropped: the timers resend what matters, as they would
    /// after a loss on the wire.
    pub fn send_all(&mut self, sockets: &[UdpSocket], out: &mut Out) -> std::io::Result<()> {
        for (i, s) in sockets.iter().enumerate() {
            self.addrs.clear();
            self.iov.clear();
            for (_, dst, data) in out.iter().filter(|o| o.0 == i) {
                self.addrs.push(sockaddr(dst));
                self.iov.push(libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                });
            }
            // The headers point into `addrs` and `iov`, which no longer change for this batch.
            self.hdrs.clear();
            for (v, a) in self.iov.iter_mut().zip(self.addrs.iter_mut()) {
                // SAFETY: a plain C struct, all zeroes is valid.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (a as *mut libc::sockaddr_in).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                self.hdrs.push(h);
            }
            let mut sent = 0;
            while sent < self.hdrs.len() {
                let n = (self.hdrs.len() - sent).min(SEND_MAX);
                // SAFETY: headers over live buffers (`out`'s bytes) and addresses.
                let r = unsafe {
                    libc::sendmmsg(s.as_raw_fd(), self.hdrs[sent..].as_mut_ptr(), n as u32, 0)
                };
                if r <= 0 {
                    let e = std::io::Error::last_os_error();
                    match e.kind() {
                        std::io::ErrorKind::Interrupted => continue,
                        // Full buffer or an ICMP error of an earlier send: skip one.
                        _ => sent += 1,
                    }
                } else {
                    sent += r as usize;
                }
            }
        }
        out.clear();
        Ok(())
    }
}

/// Asks for receive and send buffers of `bytes` each (the kernel caps them at its
/// `rmem_max` and `wmem_max`).
pub fn set_buffers(socket: &UdpSocket, bytes: i32) {
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: an int option of a live socket.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            );
        }
    }
}

/// Sleeps until one of `sockets` is readable, or `wait` has passed.
pub fn wait_readable(sockets: &[UdpSocket], wait: Duration) {
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a valid array of pollfd; `ts` lives for the call.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        );
    }
}
