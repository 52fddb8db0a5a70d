//! Accounting (`[acc]`): what a record costs the worker that makes it, and how many records
//! the writer thread puts on disk. `cargo bench -p siplb-benches --bench acc`.
//!
//! - `acc/push/…` (criterion): a worker's [`Accountant`] fed one event, the record built and
//!   pushed into the worker's queue: `invite_200` (an answered INVITE's transaction into
//!   `acc`), `cdr` (an ended call's dialog into `cdrs`) and `call` (the events of one call as
//!   `examples/acc.toml` records them: the INVITE's 200 into `acc`, the BYE on receipt into
//!   `acc` by the rule `210 Bye received`, the BYE's transaction not flagged, the CDR; three
//!   records). The queue is emptied outside the timed part, so the records are dropped by
//!   nobody timed (the writer, in siplb).
//! - `acc/writer` (a timed run, not criterion's): the real writer thread (`acc::writer::spawn`,
//!   the file sink, CSV and JSON lines, the default 10 ms group commit) over a temporary folder,
//!   two workers' accountants feeding their queues as fast as the queues take records; records
//!   per second from the first push until `acc:written` (written and synced) reaches N
//!   (200,000; 2,000 under `--test`). `-- writer N` sets N.
//! - `acc/encode/call` (criterion): the writer's encoding of one call's three records, CSV and
//!   JSON lines, one format after the other; `acc/encode/call_one_pass`: the same lines in
//!   one pass over each record, as the file sink writes them when both formats are on.
//! - `acc/writer_paced` (only with `-- paced [RATE [SECS [SYNC_MS [WRITE_MS]]]]`, default
//!   2,000 calls/s, 10 s, 10 ms, `acc.write_interval_ms`'s default): the writer thread's own
//!   CPU per call (its `schedstat`) while two threads
//!   feed it `acc.toml`'s records of RATE calls a second, paced per millisecond as workers
//!   would; the first second is left out.

use criterion::{Criterion, Throughput, criterion_group};
use siplb::acc::accountant::Accountant;
use siplb::acc::config::{AccConfig, AccRule, DEFAULT_QUEUE, Methods, Sinks};
use siplb::acc::files::{Formats, Rotation};
use siplb::acc::plane::AccPlane;
use siplb::proxy::dialogs::{DialogTimes, Outcome};
use siplb::proxy::event::{DialogRecord, EndedBy, Event, Parties, TxnOutcome};
use siplb::proxy::target::Target;
use siplb::sip::Method;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `[acc]` as `examples/acc.toml` has it (files only: the log sink is left to the end-to-end
/// comparison, `cargo xtask bench --config-b examples/acc.toml`).
fn config(dir: &Path) -> Arc<AccConfig> {
    let mut flags = Methods::default();
    flags.insert(Method::Invite);
    Arc::new(AccConfig {
        node: "bench-node".into(),
        flags,
        failed_flags: Methods::default(),
        missed_flags: flags,
        rules: vec![AccRule {
            method: Method::Bye,
            comment: "210 Bye received".into(),
            table: "acc".into(),
            account: None,
            prefix: None,
        }],
        cdrs: true,
        sinks: Sinks {
            log: false,
            files: true,
            postgres: None,
        },
        dir: dir.into(),
        formats: Formats {
            csv: true,
            jsonl: true,
        },
        sync_interval: Duration::from_millis(siplb::acc::config::DEFAULT_SYNC_INTERVAL_MS),
        sync_mode: Default::default(),
        journal_bytes: siplb::acc::config::DEFAULT_JOURNAL_KIB << 10,
        write_interval: Duration::from_millis(siplb::acc::config::DEFAULT_WRITE_INTERVAL_MS),
        rotation: Rotation {
            max_bytes: 0,
            max_age_s: 0,
        },
        queue: DEFAULT_QUEUE,
        spool_max_bytes: 1 << 30,
    })
}

fn parties(call: u64) -> Parties {
    Parties::new(
        &format!("3c26700863d4-{call:08x}@198.18.1.20"),
        "6f7a3c21",
        "acct001",
        "198.18.1.20",
        "15550001234",
        "15550001234",
        "198.18.0.10",
    )
}

fn caller() -> Target {
    Target::udp("198.18.1.20:5060".parse().unwrap())
}

fn gateway() -> Target {
    Target::udp("198.18.2.30:5060".parse().unwrap())
}

const T0: u64 = 1_796_125_784_000;

fn outcome(call: u64, method: Method, code: Option<u16>, reason: &str) -> Box<TxnOutcome> {
    Box::new(TxnOutcome {
        dialog: None,
        method,
        parties: parties(call),
        to_tag: "as5e8f1a2b".into(),
        in_dialog: method == Method::Bye,
        source: caller(),
        destination: Some(gateway()),
        account: "customer".into(),
        gateway: Some(gateway()),
        code,
        reason: reason.into(),
        q850_cause: None,
        local: false,
        at_ms: T0 + 4_000,
    })
}

fn dialog(call: u64) -> Box<DialogRecord> {
    Box::new(DialogRecord {
        id: None,
        parties: parties(call),
        to_tag: "as5e8f1a2b".into(),
        from: "\"Account 001\" <sip:acct001@198.18.1.20>;tag=6f7a3c21".into(),
        to: "<sip:15550001234@198.18.0.10>;tag=as5e8f1a2b".into(),
        caller: caller(),
        gateway: Some(gateway()),
        account: "customer".into(),
        times: DialogTimes {
            invite_received: T0,
            invite_forwarded: T0 + 1,
            first_reply: T0 + 20,
            ringing: T0 + 1_500,
            answer: T0 + 4_000,
            end: T0 + 65_237,
        },
        attempts: 1,
        outcome: Outcome {
            code: Some(200),
            reason: "OK".into(),
            q850_cause: Some(16),
        },
        limit_refused: false,
        inbound: false,
        answered: true,
        ended_by: Some(EndedBy::Caller),
        cancelled_by: None,
        vars: vec![("BillSec".into(), "61".into())],
    })
}

/// The events of one answered call, in the order a shard gives them, and how many records
/// `config` makes of them.
fn call_events(call: u64) -> ([Event; 4], u64) {
    (
        [
            Event::Transaction(outcome(call, Method::Invite, Some(200), "OK")),
            Event::Request(outcome(call, Method::Bye, None, "")),
            Event::Transaction(outcome(call, Method::Bye, Some(200), "OK")),
            Event::Dialog(dialog(call)),
        ],
        3,
    )
}

/// A worker's accountant (`acc.toml`'s `[acc]`, worker 0 of 1) queueing into `plane`.
fn accountant(plane: &Arc<AccPlane>) -> Accountant {
    Accountant::new(
        config(Path::new("/nonexistent")),
        plane.clone(),
        0,
        1,
        T0,
        Arc::default(),
    )
}

/// Pushes `events` `iters` times through one accountant; only the pushes are timed, the
/// queue is emptied untimed before it fills, its records handed back for reuse as the
/// writer hands them back in siplb.
fn time_pushes(iters: u64, events: &[Event]) -> Duration {
    let plane = Arc::new(AccPlane::new(1, DEFAULT_QUEUE));
    let mut a = accountant(&plane);
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        // Few enough that every record made is handed back (512 kept per worker).
        let n = (iters - done).min(128);
        let t = Instant::now();
        for _ in 0..n {
            for e in events {
                a.on_event(black_box(e));
            }
        }
        total += t.elapsed();
        done += n;
        assert_eq!(a.waiting(), 0, "the queue never fills");
        while let Some(r) = plane.queues[0].pop() {
            plane.recycle(r);
        }
    }
    total
}

fn push(c: &mut Criterion) {
    let mut g = c.benchmark_group("acc/push");
    let invite = [Event::Transaction(outcome(
        1,
        Method::Invite,
        Some(200),
        "OK",
    ))];
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite_200", |b| {
        b.iter_custom(|iters| time_pushes(iters, &invite))
    });
    let cdr = [Event::Dialog(dialog(1))];
    g.bench_function("cdr", |b| b.iter_custom(|iters| time_pushes(iters, &cdr)));
    let (call, records) = call_events(1);
    g.throughput(Throughput::Elements(records));
    g.bench_function("call", |b| b.iter_custom(|iters| time_pushes(iters, &call)));
    g.finish();
}

/// The writer's encoding of one call's records (`acc.toml`'s three), CSV and JSON lines.
fn encode(c: &mut Criterion) {
    let plane = Arc::new(AccPlane::new(1, DEFAULT_QUEUE));
    let mut a = accountant(&plane);
    let (events, records) = call_events(1);
    for e in &events {
        a.on_event(e);
    }
    a.flush();
    let mut call = Vec::new();
    while let Some(r) = plane.queues[0].pop() {
        call.push(r);
    }
    assert_eq!(call.len() as u64, records);
    let mut g = c.benchmark_group("acc/encode");
    g.throughput(Throughput::Elements(records));
    let mut out = String::with_capacity(1 << 16);
    g.bench_function("call", |b| {
        b.iter(|| {
            out.clear();
            for r in &call {
                siplb::acc::encode::csv_line(black_box(r), &mut out);
                siplb::acc::encode::json_line(black_box(r), &mut out);
            }
            black_box(out.len())
        })
    });
    let mut json = String::with_capacity(1 << 16);
    g.bench_function("call_one_pass", |b| {
        b.iter(|| {
            out.clear();
            json.clear();
            for r in &call {
                siplb::acc::encode::csv_and_json_lines(black_box(r), &mut out, &mut json);
            }
            black_box(out.len() + json.len())
        })
    });
    g.finish();
}

/// A whole call through one shard, without sockets (INVITE, 200, ACK, BYE, 200, as
/// `siplb_benches::DialogDriver` drives it, one call a millisecond of virtual time): without
/// accounting, with the events `acc.toml` asks of the shard (made and dropped), and with those
/// events made into records and queued (the queue emptied in the loop).
fn shard(c: &mut Criterion) {
    use siplb::proxy::event::Emit;
    use siplb_benches::DialogDriver;
    const ROOM: usize = 200_000;
    let every = Duration::from_millis(1);
    let mut g = c.benchmark_group("acc/shard");
    g.throughput(Throughput::Elements(1));
    /// Calls through `d`, their events dropped.
    fn calls(
        d: &mut DialogDriver,
        every: Duration,
    ) -> impl FnMut(&mut criterion::Bencher<'_>) + '_ {
        move |b| {
            b.iter(|| {
                d.call(every, true);
                while let Some(e) = d.shard.poll_event() {
                    black_box(e);
                }
            })
        }
    }
    let mut d = DialogDriver::new(ROOM);
    g.bench_function("call_without_accounting", calls(&mut d, every));
    drop(d);
    let emit = Emit {
        transactions: true,
        dialogs: true,
        failures: false,
        requests: true,
        transaction_methods: 1 << Method::Invite as u32,
        request_methods: 1 << Method::Bye as u32,
    };
    let mut d = DialogDriver::with_events(ROOM, emit);
    g.bench_function("call_with_events", calls(&mut d, every));
    drop(d);
    let mut d = DialogDriver::with_events(ROOM, emit);
    let plane = Arc::new(AccPlane::new(1, DEFAULT_QUEUE));
    let mut a = accountant(&plane);
    g.bench_function("call_with_records", |b| {
        b.iter(|| {
            d.call(every, true);
            while let Some(e) = d.shard.poll_event() {
                a.on_event(&e);
            }
            a.flush();
            while let Some(r) = plane.queues[0].pop() {
                plane.recycle(black_box(r));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, push, encode, shard);

/// The writer's throughput: `n` records (at least) from two workers through the real writer
/// and file sink into a temporary folder.
fn writer(n: u64) {
    const WORKERS: u32 = 2;
    let dir = std::env::temp_dir().join(format!("siplb-bench-acc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = config(&dir);
    let plane = Arc::new(AccPlane::new(WORKERS as usize, cfg.queue));
    let sinks = siplb::acc::writer::file_and_log_sinks(&cfg, &plane).expect("acc folder");
    let writer = siplb::acc::writer::spawn(cfg.clone(), plane.clone(), sinks).expect("writer");
    let calls_per_worker = n.div_ceil(3 * u64::from(WORKERS));
    let total = calls_per_worker * 3 * u64::from(WORKERS);
    let t0 = Instant::now();
    let producers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (cfg, plane) = (cfg.clone(), plane.clone());
            std::thread::spawn(move || {
                let mut a = Accountant::new(cfg, plane, w, WORKERS, T0, Arc::default());
                for call in 0..calls_per_worker {
                    // A worker refuses new calls while its queue is nearly full.
                    while a.full() {
                        a.flush();
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    let (events, _) = call_events(call * u64::from(WORKERS) + u64::from(w));
                    for e in &events {
                        a.on_event(e);
                    }
                }
                a.flush();
                assert_eq!(a.waiting(), 0);
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer");
    }
    let produced = t0.elapsed();
    while plane.written.get() < total {
        std::thread::sleep(Duration::from_micros(100));
    }
    let elapsed = t0.elapsed();
    plane.stop.store(true, std::sync::atomic::Ordering::Release);
    writer.join().expect("writer");
    // The record files only, not the commit journal (its size is fixed).
    let bytes: u64 = std::fs::read_dir(&dir)
        .expect("acc folder")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != siplb::acc::journal::NAME)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    let secs = elapsed.as_secs_f64();
    println!(
        "acc/writer: {total} records ({} calls: acc ×2 + cdrs) from {WORKERS} workers, files csv+jsonl, sync every {} ms: {:.2} s ({:.2} s to push), {:.0} records/s, {:.1} MB/s ({:.0} bytes per record, both formats)",
        total / 3,
        cfg.sync_interval.as_millis(),
        secs,
        produced.as_secs_f64(),
        total as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes as f64 / total as f64,
    );
}

/// CPU time (ns) of this process's thread named `name`, from its `schedstat`.
fn thread_cpu_ns(name: &str) -> Option<u64> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|t| {
        let t = t.ok()?.path();
        let comm = std::fs::read_to_string(t.join("comm")).ok()?;
        (comm.trim() == name).then_some(())?;
        std::fs::read_to_string(t.join("schedstat"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The writer thread's own CPU per call at a steady `rate` calls a second (`acc.toml`'s three
/// records each, from two workers) for `secs` seconds: what accounting costs siplb on top of
/// the workers' pushes, without the network and the proxy around it.
fn writer_paced(rate: u64, secs: u64, sync_ms: u64, write_ms: u64) {
    const WORKERS: u64 = 2;
    let dir = std::env::temp_dir().join(format!("siplb-bench-acc-paced-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = config(&dir);
    Arc::make_mut(&mut cfg).sync_interval = Duration::from_millis(sync_ms);
    Arc::make_mut(&mut cfg).write_interval = Duration::from_millis(write_ms);
    let plane = Arc::new(AccPlane::new(WORKERS as usize, cfg.queue));
    let sinks = siplb::acc::writer::file_and_log_sinks(&cfg, &plane).expect("acc folder");
    let writer = siplb::acc::writer::spawn(cfg.clone(), plane.clone(), sinks).expect("writer");
    // A second to settle in, then `secs` measured.
    let warmup = rate;
    let calls = rate * secs;
    let cpu0 = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let producers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (cfg, plane) = (cfg.clone(), plane.clone());
            std::thread::spawn(move || {
                let mut a =
                    Accountant::new(cfg, plane, w as u32, WORKERS as u32, T0, Arc::default());
                let per_ms = rate as f64 / 1000.0 / WORKERS as f64;
                let mut made = 0u64;
                let mine = (warmup + calls) / WORKERS;
                while made < mine {
                    // Paced per millisecond, as a worker's batches come.
                    let due = ((start.elapsed().as_secs_f64() * 1000.0) * per_ms) as u64;
                    while made < due.min(mine) {
                        let (events, _) = call_events(made * WORKERS + w);
                        for e in &events {
                            a.on_event(e);
                        }
                        made += 1;
                    }
                    a.flush();
                    std::thread::sleep(Duration::from_millis(1));
                }
                a.flush();
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    cpu0.store(
        thread_cpu_ns("siplb-acc").expect("the writer thread"),
        std::sync::atomic::Ordering::Relaxed,
    );
    let t0 = Instant::now();
    for p in producers {
        p.join().expect("producer");
    }
    let cpu1 = thread_cpu_ns("siplb-acc").expect("the writer thread");
    let wall = t0.elapsed().as_secs_f64();
    plane.stop.store(true, std::sync::atomic::Ordering::Release);
    writer.join().expect("writer");
    let _ = std::fs::remove_dir_all(&dir);
    let cpu = (cpu1 - cpu0.load(std::sync::atomic::Ordering::Relaxed)) as f64;
    let measured = wall * rate as f64;
    println!(
        "acc/writer_paced: {rate} calls/s (3 records each) for {wall:.1} s, sync every {} ms: the writer thread {:.1} ms of CPU a second, {:.2} µs per call",
        cfg.sync_interval.as_millis(),
        cpu / wall / 1e6,
        cpu / measured / 1e3,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` and `-- --test` do not.
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| f == "paced") {
        let mut nums = args.iter().filter_map(|a| a.parse().ok());
        let rate = nums.next().unwrap_or(2_000);
        let secs = nums.next().unwrap_or(if full { 10 } else { 1 });
        let sync_ms = nums
            .next()
            .unwrap_or(siplb::acc::config::DEFAULT_SYNC_INTERVAL_MS);
        let write_ms = nums
            .next()
            .unwrap_or(siplb::acc::config::DEFAULT_WRITE_INTERVAL_MS);
        writer_paced(rate, secs, sync_ms, write_ms);
        return;
    }
    if filter.is_none_or(|f| f != "writer") {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if filter.is_none_or(|f| "acc/writer".contains(f.as_str())) {
        let n =
            args.iter()
                .find_map(|a| a.parse().ok())
                .unwrap_or(if full { 200_000 } else { 2_000 });
        writer(n);
    }
}
