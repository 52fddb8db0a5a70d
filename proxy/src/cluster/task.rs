//! The lease task: the one place that talks to Redis (a thread of its own running a tokio
//! runtime; workers never wait for it). It answers the workers' requests for places, renews
//! the node's leases, gives spares back, and applies `[cluster] on_redis_down` while Redis
//! cannot be reached.

use super::Redis;
use super::fleet::{Answer, Fleet, Lease};
use super::leases::{Grant, Leases};
use crate::metrics::Counter;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a node does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnRedisDown {
    /// Calls that need a new lease get 503 with Retry-After.
    Closed,
    /// The node leases on its own, up to this share of each account's limit.
    Open(f64),
}

/// `[cluster]`, as the lease task uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// One URL: a server; several: the seeds of a Redis Cluster.
    pub redis: Vec<String>,
    /// The node's name (the top-level `node`).
    pub node: String,
    /// How long a lease lives unless renewed: a dead node's places come back after it.
    pub lease: Duration,
    /// Places leased at once while the account is far from its limit.
    pub block: u32,
    pub on_redis_down: OnRedisDown,
    /// Spare places of an account that took none for this long go back.
    pub quiet: Duration,
    /// How long an INVITE waits for a lease before it gets 503.
    pub wait: Duration,
}

/// The lease task's statistics.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// `cluster:lease_round_trips`: Redis scripts run.
    pub round_trips: Arc<Counter>,
    /// `cluster:degraded_s`: seconds spent without Redis.
    pub degraded_s: Arc<Counter>,
    /// `cluster:degraded`: 1 while Redis cannot be reached.
    pub degraded: Arc<Counter>,
    /// `cluster:leased`: places this node leases, over all accounts.
    pub leased: Arc<Counter>,
    /// `cluster:refused_unavailable`: requests answered 503 while Redis was down (closed).
    pub refused_unavailable: Arc<Counter>,
    /// `cluster:leased_degraded`: places leased locally while Redis was down (open).
    pub leased_degraded: Arc<Counter>,
}

/// The account is near its limit when the fleet has fewer than this many blocks left.
const NEAR_BLOCKS: u32 = 2;

/// How often a node holding spare places of an account looks whether another node came up
/// short of that account (and gives them back).
const SHORT_CHECK: Duration = Duration::from_millis(100);

/// Accounts whose fleet had fewer than this many blocks left are watched for shortness.
const SHORT_WATCH_BLOCKS: u32 = 8;

/// A refusal waits this long after an account was first marked short, for the spares of
/// other nodes to come back, before it is final.
const SHORT_SETTLE: Duration = Duration::from_millis(250);

/// What asking for more places came to.
enum More {
    Decided(Answer),
    /// The fleet is full now; final once `settle_in` has passed (spares of other nodes may
    /// come back meanwhile).
    Refused {
        settle_in: Duration,
    },
}
use More::{Decided, Refused};

/// A request for places that needs Redis: the account, its lease, its limit, and whether
/// this is its last try.
type Ask = (Box<[u8]>, Arc<Lease>, u32, bool);

/// A question for Redis: of this lease's account, this node holds so many places, wants so
/// many more, under this limit.
type Question = (Arc<Lease>, u32, u32, u32);

/// Requests sent to Redis at once, at most.
const MAX_ASKS: usize = 256;

struct Task {
    cfg: ClusterConfig,
    fleet: Arc<Fleet>,
    stats: Arc<ClusterStats>,
    conn: Option<Leases<Redis>>,
    next_connect: Instant,
    degraded_since: Option<Instant>,
    /// Degraded time already counted into `degraded_s`.
    degraded_counted: Duration,
    /// Connected once already: a connection made after is a reconnection.
    connected_once: bool,
    /// The server's leases are to be looked at (a reconnection): re-registered at once.
    resync: bool,
    /// Until when no new place is leased: Redis lost the fleet's leases, and the other
    /// nodes have not all told it again what they hold.
    hold_until: Option<Instant>,
    /// Redis was found to have the fleet's leases once: from then on, finding it without
    /// them means it lost them (before, it is a fleet starting).
    kept_seen: bool,
    /// When the last renewal that reached Redis began (`None` after one that did not): a
    /// renewal later than a lease time after it finds this node's leases expired.
    renewed_at: Option<Instant>,
}

/// Starts the lease task on a thread of its own.
pub fn spawn(
    cfg: ClusterConfig,
    fleet: Arc<Fleet>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(std::thread::JoinHandle<()>, Arc<ClusterStats>)> {
    let stats = Arc::new(ClusterStats::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let s = stats.clone();
    let t = std::thread::Builder::new()
        .name("siplb-cluster".into())
        .spawn(move || {
            let mut task = Task {
                cfg,
                fleet,
                stats: s,
                conn: None,
                next_connect: Instant::now(),
                degraded_since: None,
                degraded_counted: Duration::ZERO,
                connected_once: false,
                resync: false,
                hold_until: None,
                kept_seen: false,
                renewed_at: None,
            };
            rt.block_on(task.run(stop));
        })?;
    Ok((t, stats))
}

impl Task {
    /// How often the leases are renewed: a third of their time.
    fn renew_every(&self) -> Duration {
        (self.cfg.lease / 3).max(Duration::from_millis(10))
    }

    async fn run(&mut self, stop: Arc<AtomicBool>) {
        let renew_every = self.renew_every();
        let mut next_renew = Instant::now() + renew_every;
        let mut next_check = Instant::now() + SHORT_CHECK;
        // Accounts refused while other nodes may still give spares back: asked again then.
        let mut again: HashMap<Box<[u8]>, (u32, Instant)> = HashMap::new();
        // Connected before the first call needs it (or degraded from the start).
        self.leases().await;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut wanted: HashMap<Box<[u8]>, (u32, bool)> = HashMap::new();
            while let Some(r) = self.fleet.requests.pop() {
                let w = wanted.entry(r.account).or_insert((0, false));
                w.0 = w.0.max(r.limit);
            }
            again.retain(|account, (limit, at)| {
                if *at <= now {
                    wanted.insert(account.clone(), (*limit, true));
                    false
                } else {
                    // Asked again at `at`: the INVITEs wait for that answer.
                    wanted.remove(account);
                    true
                }
            });
            if wanted.is_empty() {
                let next = again
                    .values()
                    .map(|(_, at)| *at)
                    .chain([next_renew, next_check])
                    .min()
                    .unwrap_or(next_renew);
                let wait = next
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                let _ = tokio::time::timeout(wait, self.fleet.wake.notified()).await;
            }
            let mut asks: Vec<Ask> = Vec::new();
            for (account, (limit, last_try)) in wanted {
                let lease = self.fleet.lease(&account);
                if limit == 0 {
                    self.give_back(&lease, 0).await;
                    continue;
                }
                match self.before_more(&lease).await {
                    Some(answer) => self.fleet.answer(&account, answer),
                    None => asks.push((account, lease, limit, last_try)),
                }
            }
            // The accounts that need Redis are asked together, pipelined on the one
            // connection: an account (or a customer with many) does not hold up the others'
            // answers for a round trip each.
            for chunk in asks.chunks(MAX_ASKS) {
                let questions: Vec<Question> = chunk
                    .iter()
                    .map(|(_, lease, limit, _)| {
                        (lease.clone(), lease.get().0, self.want(lease), *limit)
                    })
                    .collect();
                let grants = self.acquire_many(&questions).await;
                for ((account, lease, limit, last_try), grant) in chunk.iter().zip(grants) {
                    match self.more(lease, *limit, grant) {
                        Refused { settle_in } if !last_try && !settle_in.is_zero() => {
                            again.insert(account.clone(), (*limit, Instant::now() + settle_in));
                        }
                        Refused { .. } => self.fleet.answer(account, Answer::Full),
                        Decided(answer) => self.fleet.answer(account, answer),
                    }
                }
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + SHORT_CHECK;
                self.check_short().await;
            }
            // `renew_now`: the places of calls restored after a restart, leased again at once;
            // those the fleet has no room for any more are ended.
            let restored = self.fleet.renew_now.swap(false, Ordering::AcqRel);
            if restored {
                self.release_restored().await;
            }
            if Instant::now() >= next_renew || restored || self.resync {
                next_renew = Instant::now() + renew_every;
                self.renew().await;
            }
            self.count_degraded();
        }
    }

    /// A connection to Redis, made again (at most once a second) after one failed.
    async fn leases(&mut self) -> Option<&mut Leases<Redis>> {
        if self.conn.is_none() && Instant::now() >= self.next_connect {
            self.next_connect = Instant::now() + Duration::from_secs(1);
            let connect = Redis::connect(&self.cfg.redis);
            match tokio::time::timeout(self.cfg.wait, connect).await {
                Ok(Ok(c)) => {
                    tracing::info!("cluster: connected to Redis {}", self.cfg.redis.join(", "));
                    self.conn = Some(Leases::new(c, &self.cfg.node, self.cfg.lease));
                    // Again: the leases are looked at and renewed before any new one.
                    self.resync = self.connected_once;
                    self.connected_once = true;
                }
                Ok(Err(e)) => self.down(&format!("cannot connect: {e}")),
                Err(_) => self.down("cannot connect: timed out"),
            }
        }
        self.conn.as_mut()
    }

    fn down(&mut self, why: &str) {
        self.conn = None;
        // Warned of as an outage: no renewal is late for it. But the leases may have expired
        // already: a node stalled past its lease time (SIGSTOP, a paused VM) finds on waking
        // that the command it had sent timed out.
        if let Some(last) = self.renewed_at.take() {
            self.warn_expired(last.elapsed(), "ago");
        }
        if self.degraded_since.is_none() {
            tracing::warn!(
                "cluster: Redis {} unreachable ({why}); on_redis_down = {}",
                self.cfg.redis.join(", "),
                match self.cfg.on_redis_down {
                    OnRedisDown::Closed => "closed".to_string(),
                    OnRedisDown::Open(s) => format!("open (up to {s} of each limit)"),
                }
            );
            self.degraded_since = Some(Instant::now());
            self.stats.degraded.set(1);
        }
    }

    fn up(&mut self) {
        if let Some(since) = self.degraded_since.take() {
            tracing::info!(
                "cluster: Redis reachable again after {:.1} s",
                since.elapsed().as_secs_f64()
            );
            self.count_degraded_until(since.elapsed());
            self.degraded_counted = Duration::ZERO;
            self.stats.degraded.set(0);
        }
    }

    fn count_degraded(&mut self) {
        if let Some(since) = self.degraded_since {
            self.count_degraded_until(since.elapsed());
        }
    }

    fn count_degraded_until(&mut self, total: Duration) {
        let whole = total.as_secs();
        let counted = self.degraded_counted.as_secs();
        if whole > counted {
            self.stats.degraded_s.add(whole - counted);
            self.degraded_counted = Duration::from_secs(whole);
        }
    }

    /// One script on Redis; `None` when Redis could not be reached (now degraded).
    async fn acquire(&mut self, account: &[u8], held: u32, want: u32, limit: u32) -> Option<Grant> {
        let wait = self.cfg.wait;
        let name = String::from_utf8_lossy(account).into_owned();
        let leases = self.leases().await?;
        let r = tokio::time::timeout(wait, leases.acquire_and_free(&name, held, want, limit)).await;
        self.stats.round_trips.inc();
        match r {
            Ok(Ok(v)) => {
                self.up();
                Some(v)
            }
            Ok(Err(e)) => {
                self.down(&e.to_string());
                None
            }
            Err(_) => {
                self.down("timed out");
                None
            }
        }
    }

    /// The answer to a request for places that needs no new lease (a spare place, or none
    /// while the fleet's leases are being written again); `None` when Redis must be asked.
    async fn before_more(&mut self, lease: &Lease) -> Option<Answer> {
        let (leased, taken) = lease.get();
        if taken < leased {
            return Some(Answer::Granted);
        }
        if self.resync {
            self.renew().await;
        }
        if self.hold_until.is_some_and(|t| Instant::now() < t) {
            self.stats.refused_unavailable.inc();
            return Some(Answer::Unavailable);
        }
        None
    }

    /// How many places to ask for at once.
    fn want(&self, lease: &Lease) -> u32 {
        if lease.near.load(Ordering::Relaxed) {
            1
        } else {
            self.cfg.block.max(1)
        }
    }

    /// [`acquire`](Self::acquire) for several accounts at once: the scripts go out together
    /// on the connection (which pipelines them) and each answer, or `None`, comes back in the
    /// same order as the questions.
    async fn acquire_many(&mut self, questions: &[Question]) -> Vec<Option<Grant>> {
        if questions.is_empty() {
            return Vec::new();
        }
        let Some(leases) = self.leases().await.cloned() else {
            return vec![None; questions.len()];
        };
        self.together(
            &leases,
            questions,
            |mut leases, (lease, held, want, limit)| {
                let name = String::from_utf8_lossy(&lease.account).into_owned();
                let (held, want, limit) = (*held, *want, *limit);
                async move { leases.acquire_and_free(&name, held, want, limit).await }
            },
        )
        .await
    }

    /// Asks Redis `ask(connection, item)` for every item at once, each on a clone of
    /// `leases` (the connection pipelines them), within the lease wait: the answers in the
    /// items' order, `None` where one failed. A failure marks Redis down; none, up.
    async fn together<I, T, Fut>(
        &mut self,
        leases: &Leases<Redis>,
        items: &[I],
        ask: impl Fn(Leases<Redis>, &I) -> Fut,
    ) -> Vec<Option<T>>
    where
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let wait = self.cfg.wait;
        let mut set = tokio::task::JoinSet::new();
        for (i, item) in items.iter().enumerate() {
            let asked = ask(leases.clone(), item);
            set.spawn(async move { (i, tokio::time::timeout(wait, asked).await) });
        }
        let mut out: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
        let mut failed = None;
        while let Some(done) = set.join_next().await {
            self.stats.round_trips.inc();
            match done {
                Ok((i, Ok(Ok(v)))) => out[i] = Some(v),
                Ok((_, Ok(Err(e)))) => failed = Some(e.to_string()),
                Ok((_, Err(_))) => failed = Some("timed out".into()),
                Err(e) => failed = Some(format!("lease request: {e}")),
            }
        }
        match failed {
            Some(why) => self.down(&why),
            None => self.up(),
        }
        out
    }

    /// Tells Redis what the node holds now of each account whose spares were given back
    /// ([`trim`](Self::trim)), all at once, and notes how near each is to its limit.
    async fn gave_back(&mut self, spares: &[Question]) {
        for chunk in spares.chunks(MAX_ASKS) {
            let grants = self.acquire_many(chunk).await;
            for ((lease, ..), grant) in chunk.iter().zip(grants) {
                if let Some(g) = grant {
                    self.mark_near(lease, g.free);
                }
            }
        }
    }

    /// More places for an account that has no spare one, from what Redis granted (`None`:
    /// it could not be asked).
    fn more(&mut self, lease: &Lease, limit: u32, grant: Option<Grant>) -> More {
        let leased = lease.get().0;
        let want = self.want(lease);
        match grant {
            Some(g) => {
                self.mark_near(lease, g.free);
                lease.grant(g.granted);
                self.stats.leased.add(g.granted as u64);
                if g.granted > 0 {
                    return Decided(Answer::Granted);
                }
                // Short now: nodes holding spares give them back within SHORT_CHECK.
                let since = Duration::from_millis(g.short_since_ms.unwrap_or(0));
                Refused {
                    settle_in: SHORT_SETTLE.saturating_sub(since),
                }
            }
            None => Decided(match self.cfg.on_redis_down {
                OnRedisDown::Closed => {
                    self.stats.refused_unavailable.inc();
                    Answer::Unavailable
                }
                OnRedisDown::Open(share) => {
                    let cap = ((limit as f64 * share).ceil() as u32).min(limit);
                    let grant = want.min(cap.saturating_sub(leased));
                    lease.grant(grant);
                    self.stats.leased.add(grant as u64);
                    self.stats.leased_degraded.add(grant as u64);
                    if grant > 0 {
                        Answer::Granted
                    } else {
                        Answer::Full
                    }
                }
            }),
        }
    }

    fn mark_near(&self, lease: &Lease, free: u32) {
        lease.free.store(free, Ordering::Relaxed);
        let near = free < self.cfg.block.saturating_mul(NEAR_BLOCKS);
        lease.near.store(near, Ordering::Relaxed);
    }

    /// Gives back the spares of every account another node came up short of. Only accounts
    /// whose fleet had few places left at the last answer are looked at: the others cannot
    /// have filled up since, short of a burst within one renewal.
    async fn check_short(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let few = self.cfg.block.saturating_mul(SHORT_WATCH_BLOCKS);
        let watched = self.fleet.leases_where(|l| {
            let (leased, taken) = l.get();
            leased > taken && l.free.load(Ordering::Relaxed) < few
        });
        // Asked together, as the requests for places are (one GET after another would hold
        // up the lease task for a round trip per watched account, every SHORT_CHECK).
        for chunk in watched.chunks(MAX_ASKS) {
            let Some(leases) = self.conn.clone() else {
                return;
            };
            let short = self
                .together(&leases, chunk, |mut leases, lease| {
                    let name = String::from_utf8_lossy(&lease.account).into_owned();
                    async move { leases.short(&name).await }
                })
                .await;
            if short.iter().any(Option::is_none) {
                return;
            }
            let mut spares = Vec::new();
            for (lease, short) in chunk.iter().zip(short) {
                if short == Some(true) {
                    lease.near.store(true, Ordering::Relaxed);
                    if let Some(now) = self.trim(lease, 0) {
                        let limit = lease.limit.load(Ordering::Relaxed);
                        spares.push((lease.clone(), now, 0, limit));
                    }
                }
            }
            self.gave_back(&spares).await;
        }
    }

    /// Gives `lease`'s spares back but `keep`, and tells Redis what the node holds now.
    async fn give_back(&mut self, lease: &Lease, keep: u32) {
        let Some(now) = self.trim(lease, keep) else {
            return;
        };
        let limit = lease.limit.load(Ordering::Relaxed);
        if let Some(g) = self.acquire(&lease.account, now, 0, limit).await {
            self.mark_near(lease, g.free);
        }
    }

    /// Gives `lease`'s spares back but `keep`, here: what it holds now, `None` when that did
    /// not change (Redis need not be told).
    fn trim(&self, lease: &Lease, keep: u32) -> Option<u32> {
        let (before, _) = lease.get();
        let now = lease.trim(keep);
        if now == before {
            return None;
        }
        self.stats.leased.set(
            self.stats
                .leased
                .get()
                .saturating_sub(before.saturating_sub(now) as u64),
        );
        Some(now)
    }

    /// Notes a renewal beginning at `began`, and warns when the one before reached Redis more
    /// than a lease time earlier: this node's leases expired meanwhile, and other nodes may
    /// have been granted the places its calls hold (the thread starved of CPU, or Redis slow
    /// to answer without failing).
    fn renewed_late(&mut self, began: Instant) {
        if let Some(last) = self.renewed_at.replace(began) {
            self.warn_expired(began - last, "apart");
        }
    }

    /// Warns that this node's leases expired when `gap` (between two renewals: `apart`, or
    /// since the last one: `ago`) is longer than a lease time and it holds any.
    fn warn_expired(&self, gap: Duration, how: &str) {
        if gap > self.cfg.lease && self.fleet.leased_total() > 0 {
            tracing::warn!(
                "cluster: this node's leases were renewed {:.1} s {how}, more than \
                 lease_ms ({:.1} s): they expired meanwhile, and other nodes may have \
                 taken the places its calls hold (the fleet over a limit until those \
                 calls end)",
                gap.as_secs_f64(),
                self.cfg.lease.as_secs_f64()
            );
        }
    }

    /// After a restart: leases the places of the restored calls again, and has the workers
    /// end (BYE) those the fleet no longer has places for (other nodes took them while this
    /// one was down).
    async fn release_restored(&mut self) {
        for lease in self.fleet.leases_where(|l| l.get().1 > 0) {
            let (leased, taken) = lease.get();
            let account = &lease.account;
            let limit = lease.limit.load(Ordering::Relaxed);
            let limit = if limit == 0 { u32::MAX } else { limit };
            let Some(g) = self.acquire(&lease.account, leased, 0, limit).await else {
                continue;
            };
            self.mark_near(&lease, g.free);
            let over = g.over.min(taken);
            if over > 0 {
                tracing::warn!(
                    "cluster: {over} restored calls of account {} over the fleet's limit \
                     {limit}: ending them",
                    String::from_utf8_lossy(account)
                );
                lease.to_end.store(over, Ordering::Release);
                self.fleet.answer(account, Answer::EndOver);
            }
        }
    }

    /// Renews every lease (which also tells whether the account is near its limit), gives
    /// back the spares of quiet accounts and of those near their limit, and forgets idle ones.
    /// First looks whether Redis still has the fleet's leases: when it lost them (restarted
    /// without persistence, flushed), every node tells it again what it holds at its next
    /// renewal, [`Task::renew_every`] apart at most; until then no new place is leased here.
    async fn renew(&mut self) {
        // Without a connection (Redis down, or never used yet): try again, so that the
        // degraded state ends even on a node that has nothing leased.
        if self.conn.is_none() && self.leases().await.is_some() {
            self.up();
        }
        self.resync = false;
        let began = Instant::now();
        let kept = match self.conn.as_mut() {
            Some(leases) => leases.kept().await,
            None => return,
        };
        let lost = match kept {
            Ok(kept) => !kept,
            Err(e) => return self.down(&e.to_string()),
        };
        self.renewed_late(began);
        let seen = std::mem::replace(&mut self.kept_seen, true);
        if lost && seen && self.hold_until.is_none() {
            // Time for the other nodes to notice and reconnect (at most a second apart).
            let settle = self.renew_every() + Duration::from_millis(1250);
            tracing::warn!(
                "cluster: Redis {} has lost the fleet's leases (restarted empty or flushed): \
                 renewing this node's; new places wait {:.1} s for the other nodes' \
                 (calls that need one meanwhile get 503)",
                self.cfg.redis.join(", "),
                settle.as_secs_f64()
            );
            self.hold_until = Some(Instant::now() + settle);
        }
        if self.hold_until.is_some_and(|t| Instant::now() >= t) {
            self.hold_until = None;
        }
        let now_ms = super::fleet::unix_ms();
        let quiet = self.cfg.quiet.as_millis() as u64;
        // Every lease renewed (or its spares given back), all of them asked together: one
        // round trip after another would take longer than a lease lives with many accounts
        // and a distant Redis, and hold up the requests for new places meanwhile.
        let mut questions = Vec::new();
        for lease in self.fleet.leases_where(|l| l.get().0 > 0) {
            let (leased, taken) = lease.get();
            let idle = now_ms.saturating_sub(lease.last_take_ms.load(Ordering::Relaxed)) >= quiet;
            let limit = lease.limit.load(Ordering::Relaxed);
            if leased > taken && (idle || lease.near.load(Ordering::Relaxed)) {
                if let Some(now) = self.trim(&lease, 0) {
                    questions.push((lease, now, 0, limit));
                }
                continue;
            }
            if leased > 0 {
                questions.push((lease, leased, 0, limit));
            }
        }
        let mut spares = Vec::new();
        for chunk in questions.chunks(MAX_ASKS) {
            let grants = self.acquire_many(chunk).await;
            for ((lease, _, _, limit), grant) in chunk.iter().zip(grants) {
                let Some(g) = grant else { continue };
                self.mark_near(lease, g.free);
                // Near the limit now: the spares go back at once.
                if lease.near.load(Ordering::Relaxed)
                    && lease.get().0 > lease.get().1
                    && let Some(now) = self.trim(lease, 0)
                {
                    spares.push((lease.clone(), now, 0, *limit));
                }
            }
        }
        self.gave_back(&spares).await;
        self.fleet.forget_idle();
        self.stats.leased.set(self.fleet.leased_total());
        // Said once this node's leases are in: a node that finds it knows they are counted.
        if lost
            && let Some(leases) = self.conn.as_mut()
            && let Err(e) = leases.keep().await
        {
            self.down(&e.to_string());
        }
    }
}
