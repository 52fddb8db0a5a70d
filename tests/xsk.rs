//! The AF_XDP layer on a real veth pair, in native and in generic XDP mode: siplb's XDP
//! program redirects each SIP datagram to the AF_XDP socket of the worker that owns its
//! Call-ID (two sockets sharing one UMEM on the veth's single queue), and frames written in
//! user space go back out through the TX rings and reach the peer's UDP socket (whose kernel
//! checks both checksums). siplb itself on this path is `xsk_calls.rs`. Each test makes its
//! namespaces (198.18.0.0/15) and deletes them.

use siplb::steering::{GuardMode, Redirect, XdpGuard};
use siplb::xsk::frame::{self, Route};
use siplb::xsk::{BindMode, Umem, open_group};
use siplb_common::bpf as shared;
use siplb_common::{owner_hash, owner_of};
use siplb_tests::*;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const KEY: u32 = 12345;
const WORKERS: u32 = 2;
const FRAMES: u32 = 4096;
const RING: u32 = 1024;
/// A datagram the XDP program cannot place.
const NO_CALL_ID: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n";

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    // SAFETY: setns on an open namespace file; affects this thread only.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn ifindex(dev: &str) -> u32 {
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(i, 0, "no interface {dev}");
    i
}

fn call_id(i: u32) -> String {
    format!("xsk-{i}@198.18.0.1")
}

fn options(i: u32) -> Vec<u8> {
    format!(
        "OPTIONS sip:siplb SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.52.1:5070;branch=z9hG4bK{i}\r\n\
         From: <sip:a@x>;tag={i}\r\nTo: <sip:b@y>\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        call_id(i)
    )
    .into_bytes()
}

/// What the AF_XDP side saw: per socket, the Call-IDs it received; and the guard's counters.
struct Seen {
    by_socket: Vec<Vec<String>>,
    /// Lengths of what the kernel's socket got.
    kernel: Vec<usize>,
    to_owner: u64,
    bad_frames: u64,
}

/// In namespace `b`: the XDP program in `mode`, two AF_XDP sockets; takes `expect`
/// datagrams (or gives up after 5 s), answers each with "ok <Call-ID>" from the socket that
/// got it, and reports.
fn serve(
    pair: &NetnsPair,
    mode: GuardMode,
    expect: usize,
    ready: std::sync::mpsc::Sender<()>,
) -> Seen {
    enter(&pair.b);
    let dev = &pair.dev_b;
    let guard = XdpGuard::attach(
        dev,
        5060,
        0,
        0,
        mode,
        Redirect::Xsk {
            key: KEY,
            workers: WORKERS,
            addr: pair.ip_b.parse().unwrap(),
            max_frame: siplb::xsk::port::MAX_FRAME,
        },
    )
    .expect("XDP program attached");
    let umem = Umem::new(FRAMES, 2048).expect("UMEM");
    let (mut socks, mut rings) = open_group(
        &umem,
        ifindex(dev),
        0,
        WORKERS as usize,
        RING,
        BindMode::Auto,
    )
    .expect("AF_XDP sockets");
    for (k, s) in socks.iter().enumerate() {
        guard.place_xsk(k as u32, s.as_raw_fd()).unwrap();
    }
    guard
        .place_xsk(shared::XSK_QUEUE_BASE, socks[0].as_raw_fd())
        .unwrap();
    // The first half of the frames receive, the second half send.
    let half = FRAMES / 2;
    assert!(rings.fill.free(RING) >= RING);
    for i in 0..RING {
        rings.fill.put(umem.addr(i));
    }
    rings.fill.submit();
    let mut spare_rx: Vec<u64> = (RING..half).map(|i| umem.addr(i)).collect();
    let mut free_tx: Vec<u64> = (half..FRAMES).map(|i| umem.addr(i)).collect();
    let my_mac = mac_of(&pair.b, dev);
    // What the program leaves to the kernel reaches an ordinary socket.
    let kernel = UdpSocket::bind("0.0.0.0:5060").expect("kernel socket on b");
    kernel.set_nonblocking(true).unwrap();
    ready.send(()).unwrap();

    let mut seen = Seen {
        by_socket: vec![Vec::new(); socks.len()],
        kernel: Vec::new(),
        to_owner: 0,
        bad_frames: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = 0;
    while got < expect && Instant::now() < deadline {
        rings.wake();
        for (k, s) in socks.iter_mut().enumerate() {
            let n = s.rx.ready();
            for _ in 0..n {
                let d = s.rx.take();
                // SAFETY: the frame is ours until it goes back to the fill ring.
                let bytes = unsafe { umem.bytes(d.addr, d.len as usize) };
                match frame::parse(bytes) {
                    Ok(dg) => {
                        let text = String::from_utf8_lossy(dg.payload);
                        let cid = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Call-ID: "))
                            .unwrap_or("")
                            .to_string();
                        let reply = format!("ok {cid}");
                        let route = Route {
                            src_mac: my_mac,
                            dst_mac: dg.src_mac,
                            src: dg.dst,
                            dst: dg.src,
                        };
                        let tx = free_tx.pop().expect("a free TX frame");
                        // SAFETY: a free frame of ours.
                        let out = unsafe { umem.frame_mut(tx) };
                        let len = frame::write(out, &route, reply.as_bytes(), got as u16, true)
                            .expect("fits");
                        assert!(s.tx.free(1) >= 1);
                        s.tx.put(libc::xdp_desc {
                            addr: tx,
                            len: len as u32,
                            options: 0,
                        });
                        seen.by_socket[k].push(cid);
                        got += 1;
                    }
                    Err(_) => seen.bad_frames += 1,
                }
                // Back to the kernel (here via a spare: the frame itself is free again).
                spare_rx.push(d.addr & !(u64::from(umem.frame_size()) - 1));
            }
            if n > 0 {
                s.rx.release();
                s.tx.submit();
                s.kick();
            }
        }
        let room = rings.fill.free(spare_rx.len() as u32) as usize;
        let give = room.min(spare_rx.len());
        for a in spare_rx.drain(..give) {
            rings.fill.put(a);
        }
        rings.fill.submit();
        let done = rings.completion.ready();
        for _ in 0..done {
            free_tx.push(rings.completion.take());
        }
        rings.completion.release();
        std::thread::sleep(Duration::from_micros(200));
    }
    // Let the last replies leave.
    for _ in 0..50 {
        for s in &socks {
            s.kick();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen.to_owner = guard.counters()[shared::XDP_TO_OWNER_XSK as usize];
    let mut buf = [0u8; 8192];
    while let Ok(n) = kernel.recv(&mut buf) {
        seen.kernel.push(n);
    }
    seen.kernel.sort();
    seen
}

fn round_trip(n: u8, mode: GuardMode) {
    let pair = NetnsPair::new(n);
    // Room for a datagram longer than a socket's frame, sent whole (native XDP on veth
    // takes an MTU up to about 3,500).
    pair.set_mtu(3000);
    let other = pair.add_b(3);
    // veth offloads the UDP checksum to a "device" that never computes it; a real NIC
    // always sends it computed.
    pair.tx_checksum_off_a();
    const CALLS: u32 = 40;
    let (tx, rx) = std::sync::mpsc::channel();
    let pair = &pair;
    let (seen, replies) = std::thread::scope(|scope| {
        let server = scope.spawn(move || serve(pair, mode, CALLS as usize, tx));
        let client = scope.spawn(move || {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("AF_XDP side ready");
            enter(&pair.a);
            let sock = UdpSocket::bind(format!("{}:5070", pair.ip_a)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let to: SocketAddrV4 = format!("{}:5060", pair.ip_b).parse().unwrap();
            // For the kernel: no Call-ID; longer than an AF_XDP frame; to another address.
            sock.send_to(NO_CALL_ID, to).unwrap();
            let mut long = options(1000);
            long.resize(2500, b' ');
            sock.send_to(&long, to).unwrap();
            sock.send_to(&options(1001), format!("{other}:5060"))
                .unwrap();
            for i in 0..CALLS {
                sock.send_to(&options(i), to).unwrap();
            }
            let mut replies = Vec::new();
            let mut buf = [0u8; 2048];
            while replies.len() < CALLS as usize {
                match sock.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        assert_eq!(
                            from.to_string(),
                            to.to_string(),
                            "reply from siplb's address"
                        );
                        replies.push(String::from_utf8_lossy(&buf[..len]).into_owned());
                    }
                    Err(e) => panic!("{} of {CALLS} replies, then: {e}", replies.len()),
                }
            }
            replies
        });
        let replies = client.join().expect("the peer got its replies");
        (server.join().expect("AF_XDP side"), replies)
    });
    let mut replies = replies;
    replies.sort();
    let mut want: Vec<String> = (0..CALLS).map(|i| format!("ok {}", call_id(i))).collect();
    want.sort();
    assert_eq!(
        replies, want,
        "every datagram answered once, checksums accepted"
    );
    assert_eq!(seen.bad_frames, 0);
    assert_eq!(
        seen.kernel,
        vec![NO_CALL_ID.len(), options(1001).len(), 2500],
        "no Call-ID, another address, too long: the kernel's path"
    );
    assert_eq!(
        seen.to_owner,
        u64::from(CALLS),
        "every datagram redirected to its owner"
    );
    for (k, ids) in seen.by_socket.iter().enumerate() {
        for id in ids {
            let owner = owner_of(owner_hash(KEY, id.as_bytes()), WORKERS);
            assert_eq!(
                owner, k as u32,
                "{id} reached the socket of worker {k}, owner {owner}"
            );
        }
    }
    assert!(
        seen.by_socket.iter().all(|ids| !ids.is_empty()),
        "both sockets got datagrams: {:?}",
        seen.by_socket.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn sip_datagrams_reach_their_owners_af_xdp_socket_and_answers_go_out_native() {
    round_trip(52, GuardMode::Native);
}

#[test]
fn sip_datagrams_reach_their_owners_af_xdp_socket_and_answers_go_out_generic() {
    round_trip(53, GuardMode::Generic);
}

/// A second guard on an interface that has one is refused, and the error says why in the
/// kernel's words (the errno), not only which call failed.
#[test]
fn a_guard_that_cannot_attach_says_why() {
    let _g = serial();
    let pair = NetnsPair::new(59);
    let (dev, b) = (pair.dev_b.clone(), pair.b.clone());
    std::thread::spawn(move || {
        enter(&b);
        let first = XdpGuard::attach(&dev, 5060, 0, 0, GuardMode::Generic, Redirect::Pass)
            .expect("the first guard");
        let second = XdpGuard::attach(&dev, 5060, 0, 0, GuardMode::Generic, Redirect::Pass);
        let e = second.err().expect("a second guard on the same interface");
        assert!(e.contains("busy"), "{e}");
        assert!(e.contains("os error 16"), "{e}");
        drop(first);
    })
    .join()
    .expect("guard thread");
}
