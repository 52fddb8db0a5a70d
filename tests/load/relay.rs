//! A null UDP relay: the socket path's limit for a proxy. Datagrams from the caller go to one
//! gateway, datagrams from the gateway go back to the last caller seen; no SIP work at all,
//! one thread, `recvmmsg`/`sendmmsg` batches. `cargo xtask bench --relay` runs it beside the
//! proxies, so that their CPU per call can be read against what only moving the bytes costs.

use super::io::{Batch, Out, Sender, wait_readable};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Relays between callers on `listen` and `gateway` until `stop` or `max` has passed.
pub fn relay(
    listen: SocketAddr,
    gateway: SocketAddr,
    max: Duration,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let front = UdpSocket::bind(listen)?;
    let back = UdpSocket::bind(SocketAddr::new(listen.ip(), 0))?;
    front.set_nonblocking(true)?;
    back.set_nonblocking(true)?;
    let sockets = [front, back];
    let mut batch = Batch::new();
    let mut out = Out::default();
    let mut sender = Sender::default();
    let mut caller: Option<SocketAddr> = None;
    let deadline = Instant::now() + max;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        wait_readable(&sockets, Duration::from_millis(100));
        loop {
            for (src, d) in batch.recv(&sockets[0])? {
                caller = Some(src);
                out.push(1, gateway, d);
            }
            if let Some(c) = caller {
                for (_, d) in batch.recv(&sockets[1])? {
                    out.push(0, c, d);
                }
            }
            if out.is_empty() {
                break;
            }
            sender.send_all(&sockets, &mut out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_go_to_the_gateway_and_answers_back_to_the_caller() {
        let gateway = UdpSocket::bind("127.0.0.1:0").unwrap();
        let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let listen = probe.local_addr().unwrap();
        drop(probe);
        let stop = AtomicBool::new(false);
        let gw = gateway.local_addr().unwrap();
        std::thread::scope(|s| {
            let r = s.spawn(|| relay(listen, gw, Duration::from_secs(10), &stop));
            std::thread::sleep(Duration::from_millis(100));
            let t = Duration::from_secs(2);
            gateway.set_read_timeout(Some(t)).unwrap();
            caller.set_read_timeout(Some(t)).unwrap();
            caller.send_to(b"INVITE", listen).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = gateway.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"INVITE");
            gateway.send_to(b"SIP/2.0 200 OK", from).unwrap();
            let (n, _) = caller.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"SIP/2.0 200 OK");
            stop.store(true, Ordering::Relaxed);
            r.join().unwrap().unwrap();
        });
    }
}
