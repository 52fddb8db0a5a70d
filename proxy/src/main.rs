//! The `siplb` binary: `siplb --config <file>` runs the proxy; `siplb ctl --config <file> <verb>`
//! talks to a running one.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use siplb::acc::plane::AccPlane;
use siplb::config::{Config, ShutdownDialogs, SteeringMode};
use siplb::control::{self, ControlState};
use siplb::events::{self, EventSink};
use siplb::metrics::names;
use siplb::metrics::prometheus;
use siplb::metrics::server::{self, MetricsServer};
use siplb::reload::Reloader;
use siplb::steering::{self, BpfSteering, Redirect, XdpGuard};
use siplb::worker::{ControlJob, Plane, Worker, WorkerHandle, pin_to_core};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "siplb",
    version,
    about = "SIP load balancer for carrier trunks"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control command against the siplb started with the same --config.
    #[command(after_help = control::table::help_text())]
    Ctl {
        /// Print JSON instead of kamcmd's format (also accepted after the verb).
        #[arg(long)]
        json: bool,
        /// Verb and arguments, e.g. `stats.get_statistics all`.
        #[arg(required = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    if cli.config.is_none() {
        // A command line siplb cannot use: its usage, exit status 2, as clap's own errors.
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--config <file> is required",
            )
            .exit();
    }
    let result = match cli.command {
        Some(Command::Ctl { json, args }) => ctl(cli.config, json, args),
        None => run(cli.config, cli.check),
    };
    if let Err(e) = result {
        eprintln!("siplb: {e:#}");
        std::process::exit(1);
    }
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Config> {
    let path = config.context("--config <file> is required")?;
    Ok(Config::load(&path)?)
}

/// Runs a control verb against the siplb of `config`. A file that does not pass the checks
/// (being edited before a reload) still names the socket: the problem is said on stderr and
/// the verb runs.
fn ctl(config: Option<PathBuf>, json: bool, args: Vec<String>) -> anyhow::Result<()> {
    let path = config.context("--config <file> is required")?;
    let socket = match Config::load(&path) {
        Ok(cfg) => cfg.control_socket,
        Err(e) => {
            let socket = Config::control_socket_of(&path).map_err(anyhow::Error::msg)?;
            // A reload is refused by siplb itself, which says why: said once.
            if args.first().map(String::as_str) != Some("cfg.reload") {
                eprintln!("siplb: warning: {e}");
            }
            socket
        }
    };
    let out = control::call(&socket, json, &args).map_err(anyhow::Error::msg)?;
    print!("{out}");
    Ok(())
}

fn random_u64() -> u64 {
    (u64::from(random_u32()) << 32) | u64::from(random_u32())
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    match getrandom::getrandom(&mut b) {
        Ok(()) => u32::from_ne_bytes(b),
        Err(_) => {
            std::process::id()
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
        }
    }
}

/// Everything `run` has started, stopped in one place, [`Running::stop`], however `run` ends:
/// after a signal, or on an error once anything runs (dropping it stops what it holds).
#[derive(Default)]
struct Running {
    /// Its `shutdown` tells the workers to stop.
    plane: Option<Arc<Plane>>,
    /// Tells the control thread and the XDP statistics thread to stop.
    shutdown: Arc<AtomicBool>,
    workers: Vec<JoinHandle<std::io::Result<()>>>,
    steering: Option<BpfSteering>,
    guard: Option<Arc<XdpGuard>>,
    xdp_stats: Option<JoinHandle<()>>,
    /// The `core.drain` watcher.
    drain: Option<JoinHandle<()>>,
    /// The event writer, stopped through its sink once the workers have stopped adding to it.
    events: Option<(Arc<EventSink>, JoinHandle<()>)>,
    /// The accounting writer, stopped the same way: it writes and syncs every record first.
    acc: Option<(Arc<AccPlane>, JoinHandle<()>)>,
    /// The restart journal's writer, stopped once the workers have handed it their last
    /// entries.
    journal: Option<(Arc<siplb::restart::JournalPlane>, JoinHandle<()>)>,
    /// The lease task (`[cluster]`); its leases expire by themselves.
    cluster: Option<(Arc<siplb::cluster::fleet::Fleet>, JoinHandle<()>)>,
    /// The control thread and its socket, removed once the thread has stopped.
    control: Option<(JoinHandle<()>, PathBuf)>,
    metrics: Option<MetricsServer>,
}

impl Running {
    /// Detaches the BPF programs, stops the workers, then the threads around them, and removes
    /// the control socket; the error is a worker's, if one failed. Stopping twice does nothing.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.steering.take() {
            s.detach();
        }
        self.guard = None;
        if let Some(plane) = &self.plane {
            plane.shutdown.store(true, Ordering::Relaxed);
        }
        self.shutdown.store(true, Ordering::Relaxed);
        let mut failed = None;
        for (id, t) in self.workers.drain(..).enumerate() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = Some(anyhow::anyhow!("worker {id}: {e}")),
                Err(_) => failed = Some(anyhow::anyhow!("worker {id} panicked")),
            }
        }
        if let Some((j, t)) = self.journal.take() {
            j.stop.store(true, Ordering::Release);
            let _ = t.join();
        }
        if let Some(t) = self.xdp_stats.take() {
            let _ = t.join();
        }
        if let Some(t) = self.drain.take() {
            let _ = t.join();
        }
        if let Some((sink, t)) = self.events.take() {
            sink.shutdown.store(true, Ordering::Release);
            let _ = t.join();
        }
        if let Some((acc, t)) = self.acc.take() {
            acc.stop.store(true, Ordering::Release);
            let _ = t.join();
            tracing::info!("acc: {} records written and synced", acc.written.get());
            let lost = acc.lost.load(Ordering::Relaxed);
            if lost > 0 {
                failed = Some(anyhow::anyhow!(
                    "acc: {lost} records were lost as siplb stopped (a sink still failing)"
                ));
            }
        }
        if let Some((fleet, t)) = self.cluster.take() {
            fleet.wake.notify_one();
            let _ = t.join();
        }
        if let Some((t, socket)) = self.control.take() {
            let _ = t.join();
            let _ = std::fs::remove_file(socket);
        }
        if let Some(m) = self.metrics.take() {
            m.stop();
        }
        failed.map_or(Ok(()), Err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn run(config: Option<PathBuf>, check: bool) -> anyhow::Result<()> {
    let cfg = load(config)?;
    if check {
        let problems = siplb::config::paths::unwritable(&cfg);
        if !problems.is_empty() {
            anyhow::bail!("{}: {}", cfg.path.display(), problems.join("; "));
        }
        println!("{}: ok", cfg.path.display());
        return Ok(());
    }
    siplb::logging::init(&cfg.log).map_err(anyhow::Error::msg)?;
    siplb::logging::install_panic_hook(|| {
        let _ = signal_hook::low_level::raise(SIGTERM);
    });

    // Before anything else is started or created: a second siplb on the same address stops
    // here, leaving the first one's control socket, steering and traffic alone.
    let _claim =
        siplb::instance::claim(cfg.listen, &siplb::instance::lock_dir()).context("listen.sip")?;
    let mut running = Running::default();
    let hash_key = cfg.hash_key.unwrap_or_else(random_u32);
    let mut proxy = cfg.proxy.clone();
    proxy.branch_key = [random_u64(), random_u64()];
    let proxy = Arc::new(proxy);
    let handles = (0..cfg.workers)
        .map(|_| Arc::new(WorkerHandle::new(cfg.queue_per_worker)))
        .collect();
    let mut plane = Plane::new(handles, hash_key);
    let sink = Arc::new(EventSink::new(cfg.events_queue));
    if cfg.events_file.is_some() || cfg.events_http.is_some() {
        plane.events = Some(sink.clone());
        let t = events::spawn(
            sink.clone(),
            cfg.events_file.clone(),
            cfg.events_http.clone(),
        )
        .context("events")?;
        running.events = Some((sink.clone(), t));
    }
    let mut acc_stats = Vec::new();
    if let Some(acc) = &cfg.acc {
        let queues = Arc::new(AccPlane::new(cfg.workers, acc.queue));
        let mut sinks = siplb::acc::writer::file_and_log_sinks(acc, &queues)
            .with_context(|| format!("acc.dir {}", acc.dir.display()))?;
        if acc.sinks.postgres.is_some() {
            sinks.push(siplb::acc::postgres::sink(acc, &queues).context("acc.postgres")?);
        } else {
            siplb::acc::postgres::warn_if_left(acc);
        }
        let no_sink = sinks.is_empty();
        let t = siplb::acc::writer::spawn(acc.clone(), queues.clone(), sinks).context("acc")?;
        acc_stats = queues.statistics();
        plane.acc = Some((acc.clone(), queues.clone()));
        running.acc = Some((queues, t));
        if no_sink {
            tracing::warn!(
                "acc: node {}, sinks = []: records are made (acc:records) and written nowhere",
                acc.node
            );
        } else {
            tracing::info!("acc: node {}, records to {}", acc.node, acc.dir.display());
        }
    }
    let mut cluster_stats = Vec::new();
    if let Some(c) = &cfg.cluster {
        let fleet = Arc::new(siplb::cluster::fleet::Fleet::new(cfg.workers));
        let _ = proxy.profiles.fleet.set(fleet.clone());
        let (t, stats) =
            siplb::cluster::task::spawn(c.clone(), fleet.clone(), running.shutdown.clone())
                .context("cluster")?;
        cluster_stats = vec![
            (names::CLUSTER_LEASE_ROUND_TRIPS, stats.round_trips.clone()),
            (names::CLUSTER_DEGRADED_S, stats.degraded_s.clone()),
            (names::CLUSTER_DEGRADED, stats.degraded.clone()),
            (names::CLUSTER_LEASED, stats.leased.clone()),
            (
                names::CLUSTER_LEASED_DEGRADED,
                stats.leased_degraded.clone(),
            ),
        ];
        running.cluster = Some((fleet, t));
        tracing::info!(
            "cluster: node {}, account limits shared through Redis {}",
            c.node,
            c.redis.join(", ")
        );
    }
    let mut journal_stats = Vec::new();
    if let Some(dir) = &cfg.journal_dir {
        let (restored, torn) = siplb::restart::load(dir)
            .with_context(|| format!("dialog.journal_dir {}", dir.display()))?;
        if torn > 0 {
            tracing::warn!(
                "dialog journal: {torn} unreadable lines skipped (a torn write), kept in {}",
                dir.join("dialogs.jsonl.torn").display()
            );
        }
        let j = Arc::new(siplb::restart::JournalPlane::new(cfg.workers));
        for d in &restored {
            let w = siplb::restart::owner(hash_key, d.call_id_bytes(), cfg.workers);
            j.restored[w]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(d.clone());
        }
        let t = siplb::restart::spawn(dir.clone(), j.clone(), &restored)
            .with_context(|| format!("dialog.journal_dir {}", dir.display()))?;
        tracing::info!(
            "dialog journal {}: {} answered dialogs to restore",
            dir.display(),
            restored.len()
        );
        journal_stats = vec![
            (names::DIALOG_JOURNAL_WRITTEN, j.written.clone()),
            (names::DIALOG_JOURNAL_DROPPED, j.dropped.clone()),
        ];
        plane.journal = Some(j.clone());
        running.journal = Some((j, t));
    }
    let plane = Arc::new(plane);
    running.plane = Some(plane.clone());
    // From here on SIGINT and SIGTERM are caught (and wait for the main thread, below).
    let mut signals =
        SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP]).context("signal handlers")?;
    let shutdown = running.shutdown.clone();
    let steering_bpf: Arc<siplb::metrics::Counter> = Arc::default();
    // The XDP guard's counters, refreshed from its per-CPU map (see below).
    let xdp: Vec<(&'static str, Arc<siplb::metrics::Counter>)> = [
        names::XDP_ATTACHED,
        names::XDP_SEEN,
        names::XDP_PASSED,
        names::XDP_DROP_NOT_SIP,
        names::XDP_DROP_FLOOD,
        names::XDP_DROP_BLOCKED,
        names::XDP_REDIRECTED,
        names::XDP_REDIRECTED_XSK,
        names::XDP_REDIRECTED_XSK_QUEUE,
    ]
    .into_iter()
    .map(|n| (n, Arc::default()))
    .collect();
    let mut globals = vec![
        (names::CORE_STEERING_BPF, steering_bpf.clone()),
        (names::CORE_DRAINING, plane.drain.gauge.clone()),
        (names::EVENTS_WRITTEN, sink.written.clone()),
        (names::EVENTS_DROPPED, sink.dropped.clone()),
        (names::EVENTS_HTTP_FAILED, sink.http_failed.clone()),
        (names::EVENTS_HTTP_QUEUED, sink.http_queued.clone()),
    ];
    globals.extend(xdp.iter().cloned());
    globals.extend(acc_stats);
    globals.extend(cluster_stats);
    globals.extend(journal_stats);
    let guard_slot: Arc<std::sync::OnceLock<Arc<XdpGuard>>> = Arc::default();
    let reloader = Arc::new(Reloader::new(
        &cfg,
        proxy.clone(),
        plane.workers.clone(),
        guard_slot.clone(),
    ));
    if let Some(addr) = cfg.metrics_listen {
        running.metrics = Some(
            server::serve(
                addr,
                prometheus::Sources {
                    workers: plane.workers.iter().map(|w| w.stats.clone()).collect(),
                    globals: globals.clone(),
                    profiles: proxy.profiles.clone(),
                    gateways: Some(reloader.live()),
                },
            )
            .with_context(|| format!("metrics.listen {addr}"))?,
        );
    }
    let control_ready = Arc::new(AtomicBool::new(false));
    let control = control::serve(
        &cfg.control_socket,
        ControlState::new(
            plane.workers.clone(),
            proxy.profiles.clone(),
            globals,
            shutdown.clone(),
            control_ready.clone(),
            guard_slot.clone(),
        )
        .with_config(&cfg)
        .with_reloader(reloader.clone())
        .with_drain(plane.drain.clone()),
    )
    .with_context(|| format!("control socket {}", cfg.control_socket.display()))?;
    running.control = Some((control, cfg.control_socket.clone()));

    let xsk = siplb::xsk::setup::open(&cfg, &plane.workers).map_err(|e| anyhow::anyhow!(e))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Handed to `running` once they are all started: if one cannot be started, the others
    // wait at `plane.ready` for ever, and are left to the process exit rather than joined.
    let mut threads = Vec::new();
    // Each worker sets itself up on its own thread (its io_uring is single-issuer, bound to
    // the thread that creates it) and reports back before the proxy counts as started.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(usize, std::io::Result<()>)>();
    let cfg = Arc::new(cfg);
    for id in 0..cfg.workers {
        let (cfg, proxy, plane, ready) =
            (cfg.clone(), proxy.clone(), plane.clone(), ready_tx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("siplb-w{id}"))
                .spawn(move || {
                    if cfg.pin_workers
                        && let Err(e) = pin_to_core(id % cores)
                    {
                        tracing::warn!(worker = id, "cannot pin to core {}: {e}", id % cores);
                    }
                    let w = match Worker::new(id as u32, &cfg, proxy, plane.clone()) {
                        Ok(w) => {
                            let _ = ready.send((id, Ok(())));
                            w
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            let _ = ready.send((id, Err(e)));
                            // The others wait for every worker before they start.
                            plane.ready.wait();
                            return Err(std::io::Error::other(msg));
                        }
                    };
                    let r = w.run();
                    if let Err(e) = &r {
                        // A worker that stops takes the process down: no silent half-capacity proxy.
                        tracing::error!(worker = id, "worker stopped: {e}");
                        // The main thread waits for SIGTERM.
                        let _ = signal_hook::low_level::raise(SIGTERM);
                    }
                    r
                })?,
        );
    }
    drop(ready_tx);
    running.workers = threads;
    let mut setup_error = None;
    for (id, r) in ready_rx.iter().take(cfg.workers) {
        if let Err(e) = r {
            setup_error = Some(anyhow::anyhow!(
                "worker {id}: cannot set up {} (io_uring, socket): {e}",
                cfg.listen
            ));
        }
    }
    if let Some(e) = setup_error {
        return Err(e);
    }
    if let Some((fleet, _)) = &running.cluster {
        // The workers have restored the calls of the last run: their places go to Redis now.
        fleet.renew_now.store(true, Ordering::Release);
        fleet.wake.notify_one();
    }
    running.steering = match cfg.steering {
        SteeringMode::Off => {
            tracing::info!("steering: software hand-off (steering.mode = \"off\")");
            None
        }
        mode => {
            let sockets: Vec<i32> = plane
                .workers
                .iter()
                .map(|w| w.socket_fd.load(Ordering::Acquire))
                .collect();
            match BpfSteering::attach(&sockets, hash_key) {
                Ok(s) => {
                    steering_bpf.set(1);
                    tracing::info!(
                        "steering: BPF sk_reuseport program attached to the {} worker sockets",
                        sockets.len()
                    );
                    Some(s)
                }
                Err(e) if mode == SteeringMode::Bpf => {
                    bail!("steering.mode = \"bpf\": cannot attach BPF steering: {e}");
                }
                Err(e) => {
                    tracing::warn!(
                        "steering: BPF steering unavailable ({e}); software hand-off instead"
                    );
                    None
                }
            }
        }
    };
    let cpus: Vec<u32> = (0..cfg.workers).map(|k| (k % cores) as u32).collect();
    running.guard = match (cfg.steering, cfg.xdp_mode) {
        (SteeringMode::Off, _) | (_, None) => None,
        (_, Some(mode)) => match steering::interface_of(cfg.listen.ip()) {
            None => {
                tracing::warn!(
                    "XDP guard: no interface holds {}; not attached",
                    cfg.listen.ip()
                );
                None
            }
            Some(iface) => match XdpGuard::attach(
                &iface,
                cfg.listen.port(),
                cfg.flood_rate,
                cfg.flood_burst,
                mode,
                if let Some(r) = xsk.redirect(hash_key) {
                    r
                } else if cfg.xdp_cpumap {
                    // Worker k runs on core k (mod cores) when pinned.
                    Redirect::Cpus {
                        key: hash_key,
                        cpus: &cpus,
                    }
                } else {
                    Redirect::Pass
                },
            ) {
                Ok(g) => {
                    tracing::info!("XDP guard attached to {iface} ({} mode)", g.mode);
                    xdp[0].1.set(1);
                    if let Err(e) = xsk.place(&g) {
                        bail!("AF_XDP: {e}");
                    }
                    // Customers and gateways are exempt from the flood limit.
                    let nets = siplb::reload::allow_list(&proxy);
                    for net in nets {
                        if let Err(e) = g.allow(net) {
                            tracing::warn!("XDP guard allow-list {net}: {e}");
                        }
                    }
                    let g = Arc::new(g);
                    let _ = guard_slot.set(g.clone());
                    Some(g)
                }
                Err(e) if cfg.io == siplb::config::IoPath::AfXdp => {
                    let hint = match mode {
                        steering::GuardMode::Native => {
                            "; a device without native XDP (a bridge, a bond) needs \
                             steering.xdp_mode = \"generic\" (or \"auto\")"
                        }
                        _ => "",
                    };
                    bail!(
                        "workers.io = \"af_xdp\" needs the XDP guard, which \
                         steering.xdp_mode = \"{}\" could not attach: {e}{hint}",
                        mode.name()
                    );
                }
                Err(e) => {
                    tracing::warn!("XDP guard not attached: {e}");
                    None
                }
            },
        },
    };
    if let Some(g) = running.guard.clone() {
        let (xdp, stop) = (xdp.clone(), shutdown.clone());
        let t = std::thread::Builder::new()
            .name("siplb-xdp-stats".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (i, v) in g.counters().iter().enumerate() {
                        xdp[i + 1].1.set(*v);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })?;
        running.xdp_stats = Some(t);
    }
    running.drain = Some(
        siplb::drain::watch(plane.drain.clone(), plane.workers.clone(), shutdown.clone())
            .context("drain watcher")?,
    );
    control_ready.store(true, Ordering::Release);
    tracing::info!(
        "siplb {} listening on udp:{} with {} workers; control socket {}",
        env!("CARGO_PKG_VERSION"),
        cfg.listen,
        cfg.workers,
        cfg.control_socket.display()
    );

    let me = std::process::id() as libc::pid_t;
    for o in signals.forever() {
        if o.signal == SIGHUP {
            tracing::info!("SIGHUP: reloading {}", cfg.path.display());
            // A refusal is logged by the reload itself.
            let _ = reloader.reload();
            continue;
        }
        if o.process.is_some_and(|p| p.pid == me) {
            // Raised by siplb itself, which said why (the end of a drain, a failed worker).
            tracing::info!("shutting down");
        } else {
            tracing::info!("{}: shutting down", signal_name(o.signal));
        }
        break;
    }
    // A second SIGINT or SIGTERM during the orderly stop ends the process at once: what has
    // not been written by then is lost, as after kill -9 (the files stay readable). Not one
    // siplb raised itself (a panic, the end of a drain): that asks for the stop under way.
    std::thread::Builder::new()
        .name("siplb-signals".into())
        .spawn(move || {
            let again = signals
                .forever()
                .find(|o| o.signal != SIGHUP && o.process.is_none_or(|p| p.pid != me));
            if let Some(sig) = again.map(|o| o.signal) {
                tracing::warn!(
                    "{} again: exiting now, without finishing the stop",
                    signal_name(sig)
                );
                std::process::exit(1);
            }
        })
        .context("signal thread")?;
    shut_down_dialogs(&plane, &cfg);
    running.stop()
}

/// The name of a signal siplb stops on, as operators write it.
fn signal_name(sig: i32) -> String {
    match sig {
        SIGTERM => "SIGTERM".into(),
        SIGINT => "SIGINT".into(),
        other => format!("signal {other}"),
    }
}

/// What `[shutdown] dialogs` says to do with the dialogs still up: leave the answered ones,
/// or BYE to both sides (each worker ends its own). Calls not answered yet are CANCELled
/// either way: their answer would reach no one. With anything ended, the answers get
/// `bye_wait_ms`.
fn shut_down_dialogs(plane: &Plane, cfg: &Config) {
    let up: u64 = plane
        .workers
        .iter()
        .map(|w| w.stats.active_dialogs.get())
        .sum();
    let answered = cfg.shutdown_dialogs == ShutdownDialogs::Bye;
    let (tx, rx) = std::sync::mpsc::sync_channel(plane.workers.len());
    let at = std::time::Instant::now();
    for w in &plane.workers {
        // Workers look at their control queue at least every 200 ms.
        let _ = w.control.push(ControlJob::EndAll {
            answered,
            at,
            reply: tx.clone(),
        });
    }
    drop(tx);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut ended = 0;
    for _ in 0..plane.workers.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => ended += n,
            Err(_) => break,
        }
    }
    let wait = cfg.shutdown_bye_wait.as_millis();
    if answered {
        tracing::info!(
            "{ended} dialogs up at shutdown; shutdown.dialogs = \"bye\": BYE sent to both \
             sides (CANCEL to the calls not answered yet), waiting {wait} ms for the answers"
        );
    } else {
        tracing::info!(
            "{up} dialogs up at shutdown; shutdown.dialogs = \"leave\": their peers keep \
             talking, without siplb for their in-dialog requests; {ended} not answered yet \
             CANCELled"
        );
    }
    if ended > 0 {
        std::thread::sleep(cfg.shutdown_bye_wait);
    }
}
