//! A worker's AF_XDP port: its socket, the UMEM it shares with the other sockets of its
//! interface queue, and what it needs to turn frames into datagrams and back (its address,
//! the next hops). The worker takes datagrams with [`XskPort::receive`] and offers each
//! datagram it sends to [`XskPort::send`], which declines what it cannot send itself (the
//! kernel's socket path then does).
//!
//! The sockets of one queue share one fill and one completion ring; a worker takes them
//! under the queue's lock once per batch: to give received frames back, to take free
//! frames for sending (a few dozen at a time), and to collect sent ones.

use super::frame::{self, Mac, Route};
use super::neigh::NextHops;
use super::socket::{BindMode, Umem, UmemRings, Xsk, open_group};
use siplb_common::bpf as shared;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Entries of every ring.
pub const RING: u32 = 2048;
/// Frames (2 KiB each) per worker of a queue: half for receiving, half for sending.
pub const FRAMES_PER_WORKER: u32 = 2 * RING;
const FRAME_SIZE: u32 = 2048;
/// The longest frame a socket takes: a UMEM frame less the kernel's headroom
/// (`XDP_PACKET_HEADROOM`); the XDP program leaves longer ones to the kernel.
pub const MAX_FRAME: u32 = FRAME_SIZE - 256;
/// Frames a worker takes from the shared free list at a time.
const TAKE: usize = 64;
/// Frames read from the RX ring per call at most.
const RX_BATCH: u32 = 256;

/// What the sockets of one queue share.
struct Queue {
    umem: Umem,
    pool: Mutex<Pool>,
}

struct Pool {
    rings: UmemRings,
    /// Frames neither in a ring nor held by a worker.
    free: Vec<u64>,
}

impl Pool {
    /// Collects sent frames and gives `done` back to the kernel to receive into (what does
    /// not fit waits in the free list).
    fn recycle(&mut self, done: &mut Vec<u64>) {
        let sent = self.rings.completion.ready();
        for _ in 0..sent {
            let a = self.rings.completion.take();
            self.free.push(a);
        }
        if sent > 0 {
            self.rings.completion.release();
        }
        self.free.append(done);
        let room = self.rings.fill.free(RING) as usize;
        let give = room.min(self.free.len());
        if give > 0 {
            for a in self.free.drain(self.free.len() - give..) {
                self.rings.fill.put(a);
            }
            self.rings.fill.submit();
        }
        self.rings.wake();
    }
}

/// Counts of one port.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortCounts {
    /// Datagrams received through the socket.
    pub rx: u64,
    /// Datagrams sent through the socket.
    pub tx: u64,
    /// Frames that were not a datagram for us (damaged, or to another port).
    pub rx_bad: u64,
}

pub struct XskPort {
    sock: Xsk,
    queue: Arc<Queue>,
    /// Free frames this worker holds for sending.
    tx_frames: Vec<u64>,
    /// Received frames done with, to give back.
    rx_done: Vec<u64>,
    /// Sent frames not yet published to the TX ring's consumer (the kernel).
    pending: u32,
    addr: SocketAddrV4,
    mac: Mac,
    /// The interface's MTU: the longest IP packet a frame may carry unfragmented.
    mtu: usize,
    hops: NextHops,
    ip_id: u16,
    pub counts: PortCounts,
}

/// How AF_XDP was set up.
pub struct Opened {
    pub ports: Vec<XskPort>,
    /// Interface queues with sockets.
    pub queues: u32,
    pub zero_copy: bool,
}

/// Opens the AF_XDP sockets of `workers` workers on interface `ifname`, which holds the
/// listen address `addr`: on a single-queue interface all on queue 0 over one shared UMEM;
/// on a multi-queue one, worker k on queue k (queues beyond the workers keep the kernel path).
pub fn open(ifname: &str, addr: SocketAddrV4, workers: u32, mode: BindMode) -> io::Result<Opened> {
    let ifindex = ifindex(ifname)?;
    let mac = mac_of(ifname)?;
    let mtu = mtu_of(ifname);
    let queues = rx_queues(ifname).max(1);
    let mut ports = Vec::new();
    let mut zero_copy = false;
    let groups: Vec<(u32, u32)> = if queues == 1 {
        vec![(0, workers)]
    } else {
        (0..workers.min(queues)).map(|q| (q, 1)).collect()
    };
    for (q, count) in &groups {
        let frames = FRAMES_PER_WORKER * count;
        let umem = Umem::new(frames, FRAME_SIZE)?;
        let (socks, mut rings) = open_group(&umem, ifindex, *q, *count as usize, RING, mode)?;
        zero_copy |= socks.first().is_some_and(Xsk::zero_copy);
        // Half of the frames wait in the fill ring for the kernel to receive into.
        let mut free: Vec<u64> = (0..frames).map(|i| umem.addr(i)).collect();
        let fill = RING.min(frames / 2);
        rings.fill.free(fill);
        for a in free.drain(..fill as usize) {
            rings.fill.put(a);
        }
        rings.fill.submit();
        let queue = Arc::new(Queue {
            umem,
            pool: Mutex::new(Pool { rings, free }),
        });
        for sock in socks {
            ports.push(XskPort {
                sock,
                queue: queue.clone(),
                tx_frames: Vec::with_capacity(TAKE * 2),
                rx_done: Vec::with_capacity(RX_BATCH as usize),
                pending: 0,
                addr,
                mac,
                mtu,
                hops: NextHops::new(ifindex),
                ip_id: 0,
                counts: PortCounts::default(),
            });
        }
    }
    // Worker k gets port k (when there are fewer queues than workers, the last workers have
    // none and serve the kernel path only).
    Ok(Opened {
        ports,
        queues: groups.len() as u32,
        zero_copy,
    })
}

impl XskPort {
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Hands each received datagram for our address, port and MAC to `f(source, payload,
    /// receive time)` (CLOCK_MONOTONIC ns as the XDP program stamped it, 0 when it did not); the
    /// frames taken from the RX ring (0: it was empty).
    pub fn receive(&mut self, mut f: impl FnMut(SocketAddr, &[u8], u64)) -> usize {
        let n = self.sock.rx.ready().min(RX_BATCH);
        if n == 0 {
            return 0;
        }
        let mask = !(u64::from(self.queue.umem.frame_size()) - 1);
        for _ in 0..n {
            let d = self.sock.rx.take();
            // SAFETY: the frame is ours until it goes back to the fill ring below.
            let bytes = unsafe { self.queue.umem.bytes(d.addr, d.len as usize) };
            match frame::parse(bytes) {
                // Sent to our address and MAC (or a group MAC), as the kernel's path takes
                // it: a frame for another host seen in promiscuous mode is not ours.
                Ok(dg)
                    if dg.dst == self.addr
                        && (dg.dst_mac == self.mac || dg.dst_mac[0] & 1 == 1) =>
                {
                    self.counts.rx += 1;
                    f(SocketAddr::V4(dg.src), dg.payload, self.stamp(d.addr));
                }
                _ => self.counts.rx_bad += 1,
            }
            self.rx_done.push(d.addr & mask);
        }
        self.sock.rx.release();
        let mut pool = self.queue.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.recycle(&mut self.rx_done);
        n as usize
    }

    /// The receive time the XDP program put in front of the frame at `addr` (0: none).
    fn stamp(&self, addr: u64) -> u64 {
        let frame_start = addr - addr % u64::from(self.queue.umem.frame_size());
        let len = shared::XSK_META_LEN as u64;
        if addr < frame_start + len {
            return 0;
        }
        // SAFETY: bytes of a frame we hold (taken from the RX ring, not yet given back).
        let meta = unsafe { self.queue.umem.bytes(addr - len, len as usize) };
        let word = |i: usize| u64::from_ne_bytes(meta[i..i + 8].try_into().expect("8 bytes"));
        if word(0) == shared::XSK_META_MAGIC {
            word(8)
        } else {
            0
        }
    }

    /// Queues `payload` for `dst` on the TX ring; false when this port cannot send it (not
    /// IPv4, not through our interface, next hop unknown yet, no free frame or ring slot).
    pub fn send(&mut self, now: Instant, dst: SocketAddr, payload: &[u8]) -> bool {
        let SocketAddr::V4(dst) = dst else {
            return false;
        };
        // Longer than the link takes: the kernel's path fragments it (a frame sent here
        // unfragmented would be dropped on the way, and the datagram lost).
        if frame::HEADERS + payload.len() > self.queue.umem.frame_size() as usize
            || frame::IP_HEADER + frame::UDP_HEADER + payload.len() > self.mtu
        {
            return false;
        }
        let Some(dst_mac) = self.hops.mac_for(*dst.ip(), now) else {
            return false;
        };
        if self.sock.tx.free(1) == 0 {
            return false;
        }
        let Some(addr) = self.tx_frame() else {
            return false;
        };
        let route = Route {
            src_mac: self.mac,
            dst_mac,
            src: self.addr,
            dst,
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        // SAFETY: a free frame this port holds; nobody else touches it until it is sent.
        let out = unsafe { self.queue.umem.frame_mut(addr) };
        let Some(len) = frame::write(out, &route, payload, self.ip_id, true) else {
            self.tx_frames.push(addr);
            return false;
        };
        self.sock.tx.put(libc::xdp_desc {
            addr,
            len: len as u32,
            options: 0,
        });
        self.pending += 1;
        self.counts.tx += 1;
        true
    }

    fn tx_frame(&mut self) -> Option<u64> {
        if let Some(a) = self.tx_frames.pop() {
            return Some(a);
        }
        let mut pool = self.queue.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.recycle(&mut Vec::new());
        let keep = pool.free.len().saturating_sub(TAKE);
        self.tx_frames.extend(pool.free.drain(keep..));
        self.tx_frames.pop()
    }

    /// Sends what [`XskPort::send`] queued (one kick per batch) and collects sent frames.
    pub fn flush(&mut self) {
        if self.pending > 0 {
            self.sock.tx.submit();
            self.pending = 0;
            self.sock.kick();
            let mut pool = self.queue.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.recycle(&mut self.rx_done);
        } else if self.sock.tx.needs_wakeup() {
            self.sock.kick();
        }
    }
}

fn ifindex(ifname: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: a valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

fn mac_of(ifname: &str) -> io::Result<Mac> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| io::Error::other(format!("no MAC address on {ifname}")))?;
    }
    Ok(mac)
}

/// The interface's MTU (`/sys/class/net/<if>/mtu`; 1500 when it cannot be read).
fn mtu_of(ifname: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1500)
}

/// The interface's receive queues (`/sys/class/net/<if>/queues/rx-*`).
fn rx_queues(ifname: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
}
