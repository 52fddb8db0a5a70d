//! The data plane: one worker thread per core, each with its own `SO_REUSEPORT` UDP socket,
//! its own io_uring (multishot `RecvMsg` into a provided-buffer ring, `SendMsg` in batches)
//! and its own [`Shard`] of calls.
//!
//! A datagram belongs to the worker that owns its Call-ID (`siplb_common::owner_of`). When the
//! kernel delivers it to another worker (no BPF steering), that worker hands it to the owner
//! through the owner's bounded lock-free queue and wakes it with an io_uring `MSG_RING`
//! completion posted straight into the owner's ring (no extra syscall). A full queue drops
//! the datagram and counts it; a new INVITE then gets 503 + Retry-After from the worker that
//! received it (a stateless reply needs no shard).

mod batching;
mod bufring;
mod handoff;
pub mod owner;
mod socket;
mod xdp;

pub use handoff::HandOff;

use crate::config::Config;
use crate::metrics::ShardStats;

use crate::proxy::{DialogFilter, DialogInfo, EndTarget, Event, ProxyConfig, Shard, Transmit};
use crate::sip::{Rewrite, SipMsg};
use bufring::BufRing;
use crossbeam_queue::ArrayQueue;
use io_uring::{IoUring, cqueue, opcode, types};
use siplb_common::owner_of;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// A request from the control socket to a worker's shard.
pub enum ControlJob {
    /// Snapshots of the worker's dialogs that match.
    Dialogs {
        filter: DialogFilter,
        reply: SyncSender<Vec<DialogInfo>>,
    },
    /// End a dialog (BYE to both sides, or CANCEL before the answer): whether found here.
    End {
        target: EndTarget,
        /// Header lines the BYEs carry besides their own (`extra_hdrs`).
        extra: Box<[u8]>,
        reply: SyncSender<bool>,
    },
    /// End the dialogs as siplb stops: CANCEL for the calls not answered yet, and with
    /// `answered` BYE to both sides of the others. How many were ended.
    EndAll {
        answered: bool,
        /// When the stop began: the end of the dialogs left up to the last moment.
        at: Instant,
        reply: SyncSender<usize>,
    },
    /// A reloaded configuration for the shard (new dialogs get it; live ones keep theirs).
    Reconfigure {
        cfg: Arc<ProxyConfig>,
        reply: SyncSender<()>,
    },
}

/// What other threads may touch of a worker.
pub struct WorkerHandle {
    pub queue: ArrayQueue<HandOff>,
    /// Control requests, few and small.
    pub control: ArrayQueue<ControlJob>,
    /// The worker's io_uring fd (-1 until it is set up), target of hand-off wake-ups.
    pub ring_fd: AtomicI32,
    /// The worker's socket fd (-1 until bound), for the BPF steering map.
    pub socket_fd: AtomicI32,
    pub stats: Arc<ShardStats>,
    /// The worker's AF_XDP port (`workers.io`), taken by the worker as it starts.
    pub xsk: std::sync::Mutex<Option<crate::xsk::XskPort>>,
}

impl WorkerHandle {
    pub fn new(queue: usize) -> WorkerHandle {
        WorkerHandle {
            queue: ArrayQueue::new(queue),
            control: ArrayQueue::new(64),
            ring_fd: AtomicI32::new(-1),
            socket_fd: AtomicI32::new(-1),
            stats: Arc::default(),
            xsk: std::sync::Mutex::new(None),
        }
    }
}

/// Everything the workers share.
pub struct Plane {
    pub workers: Vec<Arc<WorkerHandle>>,
    /// Where `Call_End` events go, when configured.
    pub events: Option<Arc<crate::events::EventSink>>,
    /// Accounting, when `[acc]` is configured: what to record, and the record queues.
    pub acc: Option<(
        Arc<crate::acc::config::AccConfig>,
        Arc<crate::acc::plane::AccPlane>,
    )>,
    /// Unix ms of the process start (the middle part of record ids).
    pub start_ms: u64,
    pub hash_key: u32,
    pub shutdown: AtomicBool,
    /// `core.drain`: read once per loop.
    pub drain: Arc<crate::drain::Drain>,
    /// The restart journal (`dialog.journal_dir`), when configured.
    pub journal: Option<Arc<crate::restart::JournalPlane>>,
    /// Workers start their loops together, once every ring exists.
    pub ready: Barrier,
}

impl Plane {
    pub fn new(workers: Vec<Arc<WorkerHandle>>, hash_key: u32) -> Plane {
        let n = workers.len();
        Plane {
            workers,
            events: None,
            acc: None,
            start_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            hash_key,
            shutdown: AtomicBool::new(false),
            drain: Arc::default(),
            journal: None,
            ready: Barrier::new(n),
        }
    }
}

/// User data of the `MSG_RING` completion the control thread posts into a worker's ring.
pub const TOKEN_CONTROL: u64 = 0;
const TOKEN_RECV: u64 = 1 << 62;
const TOKEN_HANDOFF: u64 = 2 << 62;
const TOKEN_SEND: u64 = 3 << 62;
const TOKEN_MASK: u64 = 3 << 62;
/// The multishot poll of the AF_XDP socket (in TOKEN_CONTROL's class).
const TOKEN_XSK: u64 = 1;
const RING_ENTRIES: u32 = 1024;
/// Hand-offs, and AF_XDP frames, taken per loop round at most.
const ROUND_MAX: usize = 512;

/// One in-flight `SendMsg`: its header, iovec, address and bytes stay put until completion.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    data: Vec<u8>,
}

pub struct Worker {
    id: u32,
    // Field order matters: the ring is dropped (closed, buffer ring unregistered) before the
    // buffer memory it pointed at.
    uring: IoUring,
    bufring: BufRing,
    socket: OwnedFd,
    plane: Arc<Plane>,
    shard: Shard,
    stats: Arc<ShardStats>,
    recv_hdr: Box<libc::msghdr>,
    // Boxed on purpose: the kernel holds pointers into a slot until its completion, so a slot
    // must not move when the Vec grows.
    #[allow(clippy::vec_box)]
    sends: Vec<Box<SendSlot>>,
    free_sends: Vec<u32>,
    /// Workers to wake at the end of this batch (hand-offs pushed to them).
    wake: Vec<bool>,
    trace: Option<BufWriter<std::fs::File>>,
    /// `debug.panic_on_call_id`.
    panic_on: Option<Box<[u8]>>,
    /// Work was left for the next round (hand-offs, AF_XDP frames): it does not wait.
    more: bool,
    rewrite: Rewrite,
    /// Replies the worker makes itself (overload 503 for a hand-off that did not fit).
    own_transmits: Vec<Transmit>,
    workers: u32,
    /// How long to let the ring wait for more completions (adaptive, `workers.batch_wait_us`).
    batching: batching::Batching,
    /// Kernel receive to processed, in µs.
    latency: hdrhistogram::Histogram<u64>,
    last_publish: Instant,
    /// The call log's rate limit and memory (none when `log.calls_per_second = 0`).
    calls: Option<crate::logging::CallLog>,
    /// The accounting buffer (none without `[acc]`).
    acc: Option<crate::acc::accountant::Accountant>,
    /// Restart journal entries its full queue could not take yet.
    journal_backlog: crate::restart::Backlog,
    /// The fleet's leases (none without `[cluster]`): answers for parked INVITEs.
    fleet: Option<Arc<crate::cluster::fleet::Fleet>>,
    /// The AF_XDP port (`workers.io`; none on the io_uring path).
    xsk: Option<crate::xsk::XskPort>,
    /// Receive errors: a warning a second at most, so that one that repeats cannot fill
    /// the log; the count of those not logged goes with the next.
    recv_warnings: crate::logging::TokenBucket,
    recv_errors_unlogged: u64,
}

// SAFETY: the raw pointers in BufRing and the msghdrs point into memory this worker owns; the
// worker moves to its thread once, before any I/O, and is used only there.
unsafe impl Send for Worker {}

impl Worker {
    fn recv_failed(&mut self, now: Instant, res: i32) {
        if !self.recv_warnings.take(now) {
            self.recv_errors_unlogged += 1;
            return;
        }
        let unlogged = std::mem::take(&mut self.recv_errors_unlogged);
        tracing::warn!(
            worker = self.id,
            "recvmsg failed: {} ({unlogged} more since the last warning)",
            io::Error::from_raw_os_error(-res)
        );
    }

    pub fn new(
        id: u32,
        cfg: &Config,
        proxy: Arc<ProxyConfig>,
        plane: Arc<Plane>,
    ) -> io::Result<Worker> {
        let socket = socket::bind_reuseport(cfg.listen, cfg.socket_rcvbuf)?;
        plane.workers[id as usize]
            .socket_fd
            .store(socket.as_raw_fd(), Ordering::Release);
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(RING_ENTRIES * 4)
            .build(RING_ENTRIES)?;
        let bufring = BufRing::new(&uring, cfg.recv_buffers, cfg.recv_buffer_size, 0)?;
        plane.workers[id as usize]
            .ring_fd
            .store(uring.as_raw_fd(), Ordering::Release);
        let stats = plane.workers[id as usize].stats.clone();
        let fleet = proxy.profiles.fleet.get().cloned();
        let mut shard = Shard::new(proxy, id, stats.clone());
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        shard.set_epoch(Instant::now(), unix_ms);
        // Worker 0 probes the gateways (replies come back to it by their Call-ID).
        if id == 0 {
            shard.enable_probing(id, plane.workers.len() as u32, plane.hash_key);
        }
        if let Some(j) = &plane.journal {
            shard.enable_journal();
            // The answered dialogs of the last run whose Call-ID this worker owns now.
            let restored = std::mem::take(
                &mut *j.restored[id as usize]
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            let now = Instant::now();
            let back = restored.iter().filter(|d| shard.restore(now, d)).count();
            if back > 0 {
                tracing::info!(
                    worker = id,
                    "{back} dialogs restored from the restart journal"
                );
            }
        }
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = size_of::<libc::sockaddr_in6>() as u32;
        // Room for one SCM_TIMESTAMPNS message: the kernel's receive time of each datagram.
        recv_hdr.msg_controllen = socket::RX_CONTROL_LEN;
        let trace = match &cfg.trace_ownership {
            Some(p) => {
                let path = format!("{}.{id}", p.display());
                Some(BufWriter::new(std::fs::File::create(path)?))
            }
            None => None,
        };
        let workers = plane.workers.len() as u32;
        let xsk = plane.workers[id as usize]
            .xsk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let acc = plane.acc.as_ref().map(|(cfg, queues)| {
            crate::acc::accountant::Accountant::new(
                cfg.clone(),
                queues.clone(),
                id,
                workers,
                plane.start_ms,
                stats.clone(),
            )
        });
        Ok(Worker {
            id,
            uring,
            bufring,
            socket,
            plane,
            shard,
            stats,
            recv_hdr,
            sends: Vec::new(),
            free_sends: Vec::new(),
            recv_warnings: crate::logging::TokenBucket::new(1.0, 3.0),
            recv_errors_unlogged: 0,
            wake: vec![false; workers as usize],
            trace,
            panic_on: cfg.panic_on_call_id.clone(),
            more: false,
            rewrite: Rewrite::new(),
            own_transmits: Vec::new(),
            workers,
            batching: batching::Batching::new(cfg.batch_wait_us, cfg.batch, Instant::now()),
            latency: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2)
                .map_err(|e| io::Error::other(e.to_string()))?,
            last_publish: Instant::now(),
            calls: (cfg.log.calls_per_second > 0)
                .then(|| crate::logging::CallLog::new(cfg.log.calls_per_second, cfg.workers)),
            acc,
            journal_backlog: Default::default(),
            fleet,
            xsk,
        })
    }

    fn arm_recv(&mut self) -> io::Result<()> {
        let e = opcode::RecvMsgMulti::new(
            types::Fd(self.socket.as_raw_fd()),
            &*self.recv_hdr,
            self.bufring.bgid(),
        )
        .build()
        .user_data(TOKEN_RECV);
        self.push_sqe(&e)
    }

    fn push_sqe(&mut self, e: &io_uring::squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in the entries we build stays valid until completion
            // (boxed msghdrs, send slots, the event buffer).
            if unsafe { self.uring.submission().push(e) }.is_ok() {
                return Ok(());
            }
            self.uring.submit()?;
        }
    }

    /// Runs until shutdown.
    pub fn run(mut self) -> io::Result<()> {
        self.plane.ready.wait();
        self.arm_recv()?;
        self.arm_xsk_poll()?;
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize);
        loop {
            if self.plane.shutdown.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            let wait = self
                .shard
                .poll_timeout()
                .map_or(Duration::from_millis(200), |t| {
                    t.saturating_duration_since(now)
                })
                .min(Duration::from_millis(200));
            // INVITEs waiting for a fleet place: their answers come without a wake-up.
            let wait = if self.shard.has_parked() {
                wait.min(Duration::from_millis(1))
            } else {
                wait
            };
            // Work left over from the last round (a flood): no wait.
            let wait = if std::mem::take(&mut self.more) {
                Duration::ZERO
            } else {
                wait
            };
            let ts = types::Timespec::from(wait);
            // Wait for one completion, or, while the load fills batches, for up to `batch` of
            // them while `batch_wait` lasts: then one wake-up serves a batch of datagrams.
            let (want, min_wait) = self.batching.next();
            let args = types::SubmitArgs::new()
                .timespec(&ts)
                .min_wait_usec(min_wait);
            match self.uring.submitter().submit_with_args(want, &args) {
                Ok(_) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::ETIME)
                        || e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                // A kernel without io_uring's `min_wait` (before 6.12): no batching then.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && min_wait > 0 => {
                    tracing::warn!(
                        worker = self.id,
                        "io_uring min_wait not supported by this kernel: workers.batch_wait_us \
                         is ignored"
                    );
                    self.batching.disable();
                }
                Err(e) => return Err(e),
            }
            // Before what woke us is handled: the first request after `core.drain` gets 503.
            self.shard.set_draining(self.plane.drain.is_draining());
            completions.clear();
            completions.extend(
                self.uring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            let now = Instant::now();
            self.batching.observe(now, completions.len());
            let mut rearm_recv = false;
            let mut rearm_xsk = false;
            for &(ud, res, flags) in &completions {
                match ud & TOKEN_MASK {
                    TOKEN_RECV => {
                        if res < 0 {
                            if res != -libc::ENOBUFS {
                                self.recv_failed(now, res);
                            }
                        } else if let Some(bid) = cqueue::buffer_select(flags) {
                            self.on_datagram(now, bid, res as usize);
                            self.bufring.recycle(bid);
                        }
                        if !cqueue::more(flags) {
                            rearm_recv = true;
                        }
                    }
                    TOKEN_HANDOFF => self.drain_hand_offs(now),
                    TOKEN_SEND => {
                        let slot = (ud & !TOKEN_MASK) as u32;
                        if res < 0 {
                            tracing::debug!(
                                worker = self.id,
                                "sendmsg failed: {}",
                                io::Error::from_raw_os_error(-res)
                            );
                        }
                        let data = std::mem::take(&mut self.sends[slot as usize].data);
                        self.shard.recycle(data);
                        self.free_sends.push(slot);
                    }
                    _ if ud == TOKEN_XSK => rearm_xsk |= !cqueue::more(flags),
                    _ => {}
                }
            }
            self.bufring.publish();
            if rearm_recv {
                self.arm_recv()?;
            }
            if rearm_xsk {
                self.arm_xsk_poll()?;
            }
            self.xsk_receive(now);
            // Hand-offs can also arrive without a wake-up we have seen yet.
            self.drain_hand_offs(now);
            self.drain_control(now);
            if let Some(fleet) = &self.fleet {
                while let Some((account, answer)) = fleet.answers[self.id as usize].pop() {
                    self.shard.lease_answer(now, &account, answer);
                }
                self.shard.expire_parked(now);
            }
            self.shard.handle_timeout(now);
            self.flush_transmits()?;
            self.drain_events(now);
            self.journal();
            if let Some(acc) = self.acc.as_mut() {
                acc.flush();
                self.shard.set_accounting_full(acc.full());
                self.shard.set_accounting_overflow(acc.overflowing());
            }
            self.stats
                .inuse_transactions
                .set(self.shard.transactions() as u64);
            self.stats
                .call_records
                .set(self.shard.dialog_records() as u64);
            self.stats
                .transaction_bytes
                .set(self.shard.transaction_bytes() as u64);
            self.stats
                .active_dialogs
                .set(self.shard.active_dialogs() as u64);
            self.stats
                .early_dialogs
                .set(self.shard.early_dialogs() as u64);
            let [s1, s2, s3, s4] = self.shard.dialogs_by_state();
            self.stats.dialogs_starting.set(s1 as u64);
            self.stats.dialogs_connecting.set(s2 as u64);
            self.stats.dialogs_answering.set(s3 as u64);
            self.stats.dialogs_ongoing.set(s4 as u64);
            if now.duration_since(self.last_publish) >= Duration::from_secs(1) {
                self.last_publish = now;
                self.publish_latency();
            }
            for w in 0..self.wake.len() {
                if std::mem::take(&mut self.wake[w]) {
                    // Posts a completion into the owner's ring: it wakes and drains its queue.
                    // Submitted with the next enter, at the top of the loop.
                    let fd = self.plane.workers[w].ring_fd.load(Ordering::Acquire);
                    let e = opcode::MsgRingData::new(types::Fd(fd), 0, TOKEN_HANDOFF, None)
                        .build()
                        .flags(io_uring::squeue::Flags::SKIP_SUCCESS)
                        .user_data(TOKEN_HANDOFF | 1);
                    self.push_sqe(&e)?;
                }
            }
        }
        self.publish_latency();
        // The dialogs still up end here for siplb: each gets its record (`ended_by =
        // shutdown`) before the worker stops; its accounting buffer goes to the writer.
        let now = Instant::now();
        // With the restart journal, answered dialogs stay up for the next run: what the
        // journal's queue could not take yet gets a second to go.
        for _ in 0..100 {
            if self.journal() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let up = self.shard.abandon_all(now, self.plane.journal.is_some());
        if up > 0 {
            tracing::info!(
                worker = self.id,
                "{up} dialogs up at exit recorded as ended by shutdown"
            );
        }
        // What that answered (the 487s of calls the stop CANCELled) goes out now: the ring's
        // loop is over.
        self.send_left();
        self.drain_events(now);
        if let Some(t) = self.trace.as_mut() {
            t.flush()?;
        }
        Ok(())
    }

    fn on_datagram(&mut self, now: Instant, bid: u16, len: usize) {
        let buf = self.bufring.buffer(bid, len);
        let Ok(out) = types::RecvMsgOut::parse(buf, &self.recv_hdr) else {
            return;
        };
        let Some(src) = socket::sockaddr_from_bytes(out.name_data()) else {
            return;
        };
        if out.is_payload_truncated() {
            // Too long for a receive buffer: a stateless 513 from here when it can be.
            self.stats.truncated.inc();
            self.shard.handle_truncated(src, out.payload_data());
            return;
        }
        let rx_ns = socket::rx_timestamp_ns(out.control_data()).unwrap_or(0);
        let payload: &[u8] = out.payload_data();
        // SAFETY: the payload lives in buffer `bid` of the ring, which is handed back to the
        // kernel only after this function returns (`recycle` in `run`); nothing below touches
        // the buffer ring, so detaching the borrow from `self` is sound.
        let payload: &[u8] = unsafe { std::slice::from_raw_parts(payload.as_ptr(), payload.len()) };
        let owner = owner::call_id_hash(self.plane.hash_key, payload)
            .map_or(self.id, |h| owner_of(h, self.workers));
        if owner == self.id {
            self.process(now, src, payload, self.id, rx_ns);
            return;
        }
        self.hand_off(now, owner, src, payload, rx_ns);
    }

    /// Hands the shard's events on: the `Call_End` event of each answered dialog, encoded as
    /// JSON, to the event sink; the line of each refused, failed or siplb-ended call to the
    /// log.
    fn drain_events(&mut self, now: Instant) {
        while let Some(e) = self.shard.poll_event() {
            if let Some(calls) = self.calls.as_mut() {
                calls.event(now, &e, &self.stats.log_dropped_lines);
            }
            if let (Event::Dialog(r), Some(sink)) = (&e, &self.plane.events)
                && r.answered
            {
                sink.push(crate::events::call_end_json(r));
            }
            if let Some(acc) = self.acc.as_mut() {
                acc.on_event(&e);
            }
            if let Event::Gateway(g) = &e {
                crate::logging::gateway_change(g);
            }
        }
    }

    /// Hands the journal entries of the dialogs that changed to the journal writer, in
    /// order ([`crate::restart::Backlog`]); whether nothing is left waiting.
    fn journal(&mut self) -> bool {
        let Some(j) = &self.plane.journal else {
            return true;
        };
        let mut entries = Vec::new();
        self.shard.journal_entries(&mut entries);
        self.journal_backlog.hand_over(j, self.id as usize, entries)
    }

    fn drain_control(&mut self, now: Instant) {
        let handle = self.plane.workers[self.id as usize].clone();
        while let Some(job) = handle.control.pop() {
            match job {
                ControlJob::Dialogs { filter, reply } => {
                    let _ = reply.send(self.shard.dialog_infos(now, &filter));
                }
                ControlJob::End {
                    target,
                    extra,
                    reply,
                } => {
                    let _ = reply.send(self.shard.end_dialog_with(now, &target, &extra));
                }
                ControlJob::EndAll {
                    answered,
                    at,
                    reply,
                } => {
                    let _ = reply.send(self.shard.end_all(now, at, answered));
                }
                ControlJob::Reconfigure { cfg, reply } => {
                    self.shard.reconfigure(cfg);
                    let _ = reply.send(());
                }
            }
        }
    }

    fn process(
        &mut self,
        now: Instant,
        src: SocketAddr,
        data: &[u8],
        received_by: u32,
        rx_ns: u64,
    ) {
        if let Some(t) = self.trace.as_mut() {
            // `<processed_by> <received_by> <method or status> <cseq method> <call-id>`
            if let Ok(m) = SipMsg::parse(data) {
                let _ = write!(t, "{} {} ", self.id, received_by);
                match m.method() {
                    Some(_) => t.write_all(
                        m.start_line
                            .of(data)
                            .split(|&b| b == b' ')
                            .next()
                            .unwrap_or(b"-"),
                    ),
                    None => write!(t, "{}", m.status().unwrap_or(0)),
                }
                .and_then(|_| t.write_all(b" "))
                .and_then(|_| t.write_all(m.cseq_method_span.of(data)))
                .and_then(|_| t.write_all(b" "))
                .and_then(|_| t.write_all(m.call_id()))
                .and_then(|_| t.write_all(b"\n"))
                .ok();
            }
        }
        if let Some(id) = &self.panic_on
            && SipMsg::parse(data).is_ok_and(|m| m.call_id() == &id[..])
        {
            panic!("debug.panic_on_call_id: a datagram with that Call-ID (a test of a panic)");
        }
        self.shard.handle(now, src, data);
        if rx_ns != 0 {
            // Kernel receive to done here (what it causes is sent at the next ring enter, a
            // few µs on): the latency siplb adds, batching wait and hand-off included.
            let done = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let ns = done.saturating_sub(rx_ns);
            self.latency.saturating_record(ns / 1000);
            self.stats.latency_count.inc();
            self.stats.latency_sum_ns.add(ns);
        }
    }

    /// Publishes the latency percentiles (µs since start) into the statistics.
    fn publish_latency(&mut self) {
        let h = &self.latency;
        if h.is_empty() {
            return;
        }
        self.stats.latency_p50_us.set(h.value_at_quantile(0.50));
        self.stats.latency_p99_us.set(h.value_at_quantile(0.99));
        self.stats.latency_max_us.set(h.max());
    }

    /// Sends what the shard still has to send with plain `sendto`s, as the worker stops.
    fn send_left(&mut self) {
        let fd = self.socket.as_raw_fd();
        while let Some(t) = self.shard.poll_transmit() {
            let Some(t) = self.xsk_send(t) else {
                continue;
            };
            // SAFETY: plain data, filled in below.
            let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = socket::sockaddr_to_storage(t.dst.addr, &mut addr);
            // SAFETY: a valid descriptor, buffer and address of `len` bytes.
            unsafe {
                libc::sendto(
                    fd,
                    t.data.as_ptr() as *const libc::c_void,
                    t.data.len(),
                    0,
                    &addr as *const _ as *const libc::sockaddr,
                    len,
                )
            };
        }
        self.xsk_flush();
    }

    fn flush_transmits(&mut self) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let mut own = std::mem::take(&mut self.own_transmits);
        while let Some(t) = own.pop().or_else(|| self.shard.poll_transmit()) {
            let Some(t) = self.xsk_send(t) else {
                continue;
            };
            let slot = match self.free_sends.pop() {
                Some(s) => s,
                None => {
                    self.sends.push(Box::new(SendSlot {
                        // SAFETY: msghdr, iovec and sockaddr_storage are plain data; all
                        // zeroes is a valid value of each, filled in below.
                        hdr: unsafe { std::mem::zeroed() },
                        iov: libc::iovec {
                            iov_base: std::ptr::null_mut(),
                            iov_len: 0,
                        },
                        // SAFETY: as above.
                        addr: unsafe { std::mem::zeroed() },
                        data: Vec::new(),
                    }));
                    (self.sends.len() - 1) as u32
                }
            };
            let s = &mut *self.sends[slot as usize];
            s.data = t.data;
            let addr_len = socket::sockaddr_to_storage(t.dst.addr, &mut s.addr);
            s.iov = libc::iovec {
                iov_base: s.data.as_mut_ptr() as *mut libc::c_void,
                iov_len: s.data.len(),
            };
            // SAFETY: plain data.
            s.hdr = unsafe { std::mem::zeroed() };
            s.hdr.msg_name = &mut s.addr as *mut _ as *mut libc::c_void;
            s.hdr.msg_namelen = addr_len;
            s.hdr.msg_iov = &mut s.iov;
            s.hdr.msg_iovlen = 1;
            let e = opcode::SendMsg::new(types::Fd(fd), &s.hdr)
                .build()
                .user_data(TOKEN_SEND | slot as u64);
            self.push_sqe(&e)?;
        }
        self.own_transmits = own;
        self.xsk_flush();
        Ok(())
    }
}

/// Pins the calling thread to `core`.
pub fn pin_to_core(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
