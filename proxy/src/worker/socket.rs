//! The worker's UDP socket and socket-address conversions for msghdr.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;

/// A UDP socket bound to `addr` in the `SO_REUSEPORT` group of the workers.
pub fn bind_reuseport(addr: SocketAddr, rcvbuf: usize) -> io::Result<OwnedFd> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.cloexec(),
        Some(Protocol::UDP),
    )?;
    s.set_reuse_port(true)?;
    // As root the limit of net.core.rmem_max does not apply; otherwise take what we get.
    if !set_int(&s, libc::SO_RCVBUFFORCE, rcvbuf) {
        let _ = s.set_recv_buffer_size(rcvbuf);
    }
    let _ = s.set_send_buffer_size(rcvbuf);
    // The kernel's receive time of each datagram comes with it (latency statistics).
    set_int(&s, libc::SO_TIMESTAMPNS, 1);
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn set_int(s: &Socket, opt: libc::c_int, v: usize) -> bool {
    use std::os::fd::AsRawFd;
    let v = v.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt reads an int from a valid pointer.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as u32,
        ) == 0
    }
}

/// Control space for one `SCM_TIMESTAMPNS` message (`CMSG_SPACE(sizeof(struct timespec))`).
pub const RX_CONTROL_LEN: usize = 32;

/// The `SCM_TIMESTAMPNS` receive time (CLOCK_REALTIME, ns) in a datagram's control data.
pub fn rx_timestamp_ns(control: &[u8]) -> Option<u64> {
    // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } then the data,
    // 8-byte aligned on this platform.
    let mut c = control;
    while c.len() >= 16 {
        let len = usize::from_ne_bytes(c[..8].try_into().ok()?);
        let level = i32::from_ne_bytes(c[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(c[12..16].try_into().ok()?);
        if len < 16 || len > c.len() {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS && len >= 32 {
            let sec = i64::from_ne_bytes(c[16..24].try_into().ok()?);
            let nsec = i64::from_ne_bytes(c[24..32].try_into().ok()?);
            return u64::try_from(sec)
                .ok()?
                .checked_mul(1_000_000_000)?
                .checked_add(u64::try_from(nsec).ok()?);
        }
        c = &c[len.next_multiple_of(8).min(c.len())..];
    }
    None
}

/// Reads a `sockaddr_in`/`sockaddr_in6` as the kernel wrote it into a receive buffer.
pub fn sockaddr_from_bytes(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as i32;
    match family {
        libc::AF_INET if b.len() >= 8 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if b.len() >= 24 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `storage`; returns the length to put in `msg_namelen`.
pub fn sockaddr_to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> u32 {
    let sa = socket2::SockAddr::from(addr);
    let len = sa.len();
    // SAFETY: SockAddr's storage is a sockaddr_storage of which `len` bytes are set.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr() as *const u8,
            storage as *mut libc::sockaddr_storage as *mut u8,
            len as usize,
        );
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for a in ["127.0.0.1:5060", "[2001:db8::1]:5070"] {
            let a: SocketAddr = a.parse().unwrap();
            // SAFETY: plain data.
            let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = sockaddr_to_storage(a, &mut st);
            // SAFETY: reading the bytes we just wrote.
            let bytes =
                unsafe { std::slice::from_raw_parts(&st as *const _ as *const u8, len as usize) };
            assert_eq!(sockaddr_from_bytes(bytes), Some(a));
        }
    }

    #[test]
    fn receive_timestamp_from_control_data() {
        let mut c = Vec::new();
        c.extend_from_slice(&32usize.to_ne_bytes());
        c.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        c.extend_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
        c.extend_from_slice(&1_795_000_000i64.to_ne_bytes());
        c.extend_from_slice(&123_456_789i64.to_ne_bytes());
        assert_eq!(rx_timestamp_ns(&c), Some(1_795_000_000_123_456_789));
        assert_eq!(rx_timestamp_ns(&c[..20]), None);
        assert_eq!(rx_timestamp_ns(&[]), None);
        let mut bad = c.clone();
        bad[..8].copy_from_slice(&4usize.to_ne_bytes());
        assert_eq!(rx_timestamp_ns(&bad), None);
    }
}
