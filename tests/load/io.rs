//! Datagrams in batches: `recvmmsg` into fixed buffers, `sendmmsg` of what the calls queued,
//! `poll` to sleep until a socket has something.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

const BATCH: usize = 64;
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

/// Sends every queued datagram (socket index, destination, bytes), in batches per socket,
/// and empties the queue. A datagram the kernel refuses (a full buffer) is dropped: the
/// timers resend what matters, as they would after a loss on the wire.
pub fn send_all(
    sockets: &[UdpSocket],
    out: &mut Vec<(usize, SocketAddr, Vec<u8>)>,
) -> std::io::Result<()> {
    for (i, s) in sockets.iter().enumerate() {
        let mine: Vec<&(usize, SocketAddr, Vec<u8>)> = out.iter().filter(|o| o.0 == i).collect();
        for chunk in mine.chunks(BATCH) {
            let mut addrs: Vec<libc::sockaddr_in> = chunk.iter().map(|o| sockaddr(o.1)).collect();
            let mut iov: Vec<libc::iovec> = chunk
                .iter()
                .map(|o| libc::iovec {
                    iov_base: o.2.as_ptr() as *mut libc::c_void,
                    iov_len: o.2.len(),
                })
                .collect();
            let mut hdrs: Vec<libc::mmsghdr> = iov
                .iter_mut()
                .zip(addrs.iter_mut())
                .map(|(v, a)| {
                    // SAFETY: a plain C struct, all zeroes is valid.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_name = (a as *mut libc::sockaddr_in).cast();
                    h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                    h.msg_hdr.msg_iov = v;
                    h.msg_hdr.msg_iovlen = 1;
                    h
                })
                .collect();
            let mut sent = 0;
            while sent < hdrs.len() {
                // SAFETY: headers over live buffers and addresses.
                let n = unsafe {
                    libc::sendmmsg(
                        s.as_raw_fd(),
                        hdrs[sent..].as_mut_ptr(),
                        (hdrs.len() - sent) as u32,
                        0,
                    )
                };
                if n <= 0 {
                    let e = std::io::Error::last_os_error();
                    match e.kind() {
                        std::io::ErrorKind::Interrupted => continue,
                        // Full buffer or an ICMP error of an earlier send: skip one.
                        _ => sent += 1,
                    }
                } else {
                    sent += n as usize;
                }
            }
        }
    }
    out.clear();
    Ok(())
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
