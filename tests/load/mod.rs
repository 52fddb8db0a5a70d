//! siplb's own load generator: the caller and the gateways in one process and one thread,
//! the call flow of `examples/sipp/uac.xml` and `uas.xml` (INVITE, 180, 200, ACK, hold, BYE,
//! 200; retransmissions by RFC 3261's timers), at a fixed rate, bounded in calls and in time.
//! Datagrams move in batches (`recvmmsg`, `sendmmsg`), so the generator spends a fraction of
//! sipp's CPU on a call and can drive siplb past what sipp reaches. `cargo xtask load` runs it;
//! the tests run it in-process.

mod calls;
mod io;
pub mod relay;
pub mod sip;

pub use calls::Outcome;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Load {
    /// siplb's address.
    pub target: SocketAddr,
    /// The caller's address.
    pub caller: SocketAddr,
    /// The gateways' addresses (siplb's gateway set).
    pub gateways: Vec<SocketAddr>,
    /// (account, number dialled) pairs, taken in turn (sipp's `-inf` in SEQUENTIAL order).
    pub accounts: Vec<(String, String)>,
    pub rate: u32,
    pub calls: usize,
    pub hold: Duration,
    /// The run ends by then, whatever is still under way (counted as unfinished).
    pub max: Duration,
    /// Wake up at this period and take every datagram waiting, instead of at each arrival
    /// (zero): at high rates a wake-up per datagram costs more than the calls themselves,
    /// and response times are then measured to within a tick.
    pub tick: Duration,
}

impl Load {
    /// The tick `xtask load` uses when none is given: from 500 calls/s up, the time eight
    /// calls take to start, within 1..4 ms (4 ms up to 2,000 calls/s, 2 ms at 4,000, 1 ms
    /// from 8,000), so that a wake-up always has several calls' datagrams to take; none
    /// below.
    pub fn default_tick(rate: u32) -> Duration {
        if rate >= 500 {
            Duration::from_micros((8_000_000 / u64::from(rate)).clamp(1_000, 4_000))
        } else {
            Duration::ZERO
        }
    }
}

/// What came of it.
#[derive(Debug)]
pub struct Report {
    pub ok: usize,
    pub refused: usize,
    pub timeout: usize,
    pub unfinished: usize,
    pub retransmissions: u64,
    pub wall: Duration,
    /// The generator's own CPU (user + system), seconds.
    pub cpu_s: f64,
    /// INVITE → 200 and BYE → 200, µs.
    pub invite_rtt: hdrhistogram::Histogram<u64>,
    pub bye_rtt: hdrhistogram::Histogram<u64>,
    /// Each call's outcome and response times (µs), in call order.
    pub per_call: Vec<(Outcome, u64, u64)>,
}

impl Report {
    /// One line of figures.
    pub fn summary(&self) -> String {
        let q = |h: &hdrhistogram::Histogram<u64>, p: f64| h.value_at_quantile(p);
        format!(
            "ok {} refused {} timeout {} unfinished {} retransmissions {} in {:.1} s; \
             INVITE→200 p50 {} µs p99 {} µs, BYE→200 p50 {} µs p99 {} µs; generator CPU {:.2} s \
             ({:.1} µs per call)",
            self.ok,
            self.refused,
            self.timeout,
            self.unfinished,
            self.retransmissions,
            self.wall.as_secs_f64(),
            q(&self.invite_rtt, 0.5),
            q(&self.invite_rtt, 0.99),
            q(&self.bye_rtt, 0.5),
            q(&self.bye_rtt, 0.99),
            self.cpu_s,
            self.cpu_s * 1e6 / self.ok.max(1) as f64,
        )
    }

    /// Writes `call;outcome;invite_rtt_us;bye_rtt_us` lines.
    pub fn write_csv(&self, path: &Path) -> std::io::Result<()> {
        let mut s = String::from("call;outcome;invite_rtt_us;bye_rtt_us\n");
        for (n, (o, i, b)) in self.per_call.iter().enumerate() {
            s.push_str(&format!("{n};{o:?};{i};{b}\n"));
        }
        std::fs::write(path, s)
    }
}

/// `account;number;` lines (sipp's injection file), comments and `SEQUENTIAL` skipped.
pub fn read_accounts(path: &Path) -> std::io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)?;
    let v: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(';'))
        .filter_map(|l| {
            let mut f = l.split(';');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect();
    if v.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: no `account;number;` line", path.display()),
        ));
    }
    Ok(v)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Runs `load` to its end: every call finished, or `load.max` passed.
pub fn run(load: &Load) -> std::io::Result<Report> {
    assert!(load.rate > 0 && !load.gateways.is_empty() && !load.accounts.is_empty());
    let mut sockets = vec![UdpSocket::bind(load.caller)?];
    for g in &load.gateways {
        sockets.push(UdpSocket::bind(g)?);
    }
    for s in &sockets {
        s.set_nonblocking(true)?;
        // As sipp's `-buff_size 1048576`: a tick's datagrams wait in the socket.
        io::set_buffers(s, 1 << 20);
    }
    let mut batch = io::Batch::new();
    let mut sender = io::Sender::default();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut calls = calls::Calls::new(
        load.calls,
        &load.accounts,
        load.caller,
        load.target,
        load.gateways.clone(),
        load.hold,
        t0,
    );
    let mut started = 0;
    let gap = Duration::from_secs(1) / load.rate;
    loop {
        let now = Instant::now();
        // Calls due by now at the rate (a late loop starts its backlog at once).
        while started < load.calls && t0 + gap * started as u32 <= now {
            calls.start(started, now);
            started += 1;
        }
        for (i, s) in sockets.iter().enumerate() {
            // Everything waiting, a batch at a time.
            loop {
                let mut got = 0;
                for (src, buf) in batch.recv(s)? {
                    got += 1;
                    if i == 0 {
                        calls.on_caller(buf, now);
                    } else {
                        calls.on_gateway(i, src, buf, now);
                    }
                }
                if got < io::BATCH {
                    break;
                }
            }
        }
        calls.on_timers(now);
        sender.send_all(&sockets, &mut calls.out)?;
        if calls.finished == load.calls || now.duration_since(t0) >= load.max {
            break;
        }
        if !load.tick.is_zero() {
            std::thread::sleep(load.tick.saturating_sub(now.elapsed()));
            continue;
        }
        // Sleep until the next call, timer or datagram (at most 1 ms).
        let next_start = (started < load.calls).then(|| t0 + gap * started as u32);
        let wake = [next_start, calls.next_timer()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_millis(1));
        let wait = wake
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(1));
        io::wait_readable(&sockets, wait);
    }
    let wall = t0.elapsed();
    let cpu_s = cpu_seconds() - cpu0;
    let mut r = Report {
        ok: 0,
        refused: 0,
        timeout: 0,
        unfinished: 0,
        retransmissions: calls.retransmissions,
        wall,
        cpu_s,
        invite_rtt: hdrhistogram::Histogram::new(3).expect("histogram"),
        bye_rtt: hdrhistogram::Histogram::new(3).expect("histogram"),
        per_call: Vec::with_capacity(load.calls),
    };
    for n in 0..load.calls {
        let o = calls.outcome(n);
        let c = &calls.calls[n];
        match o {
            Outcome::Ok => {
                r.ok += 1;
                let _ = r.invite_rtt.record(c.invite_rtt_us);
                let _ = r.bye_rtt.record(c.bye_rtt_us);
            }
            Outcome::Refused(_) => r.refused += 1,
            Outcome::Timeout => r.timeout += 1,
            Outcome::Unfinished => r.unfinished += 1,
        }
        r.per_call.push((o, c.invite_rtt_us, c.bye_rtt_us));
    }
    Ok(r)
}
