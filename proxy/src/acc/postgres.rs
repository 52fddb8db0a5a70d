//! The PostgreSQL sink (`[acc] postgres = "<libpq connection string>"`): the writer puts
//! every record into the durable [spool](super::spool) and a shipper thread (a
//! current-thread tokio runtime, tokio-postgres) moves it into the database in spool order,
//! one transaction per batch: `COPY` into a temporary staging table, then `INSERT … ON
//! CONFLICT (node, id) DO NOTHING` into the table, commit, and only then the spool's
//! committed offset moves on. A batch shipped again (the connection lost before the commit
//! was known, a crash before the offset was written) lands once.
//!
//! While the database is unreachable records stay spooled (`acc:spool_records`); when the
//! spool passes `spool_max_mb` new INVITEs get 503. At exit the shipper gets a short while
//! to catch up; what is left is shipped at the next start.
//!
//! A batch the database refuses while the connection stands is told apart by its SQLSTATE:
//! a record it cannot take (class 22, a data exception such as a value too long for a
//! column made by hand; class 23, a constraint) is found by halving the batch, set aside in
//! `<acc.dir>/spool/rejected.jsonl` with the server's message and counted in
//! `acc:rejected_records`, and the rest lands, so that one record cannot hold back every
//! later one. Anything else (a table of another shape, a missing privilege) is the
//! database's setup: the records stay spooled and are retried with the outage's backoff,
//! with one log line per new message (and a reminder a minute).
//!
//! The tables are made from `proxy/sql/acc.sql` at every connection (`IF NOT EXISTS`); a
//! table a rule names is made `LIKE acc` on first use.

use super::config::AccConfig;
use super::pglimit::PgError;
use super::pgtls::{ConnectError, PgTarget};
use super::plane::AccPlane;
use super::record::{ACC_COLUMNS, CDR_COLUMNS};
use super::sink::Sink;
use super::spool::{Spool, SpoolSink, Spooled};
use crate::metrics::Counter;
use ship::Stages;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The tables, as shipped in the repository.
pub const SCHEMA: &str = include_str!("../../sql/acc.sql");
/// Records per transaction at most.
const BATCH: usize = 5000;
/// How long a connection attempt, or a batch, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SHIP_TIMEOUT: Duration = Duration::from_secs(60);
/// A batch unanswered this long is logged (and still waited for, up to `SHIP_TIMEOUT`).
const STALL_WARNING: Duration = Duration::from_secs(5);
/// Waits between connection attempts: from the first to the last, doubling.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A trouble that goes on is logged again this often.
const REMIND: Duration = Duration::from_secs(60);
pub use rejected::{REJECTED, RETRY, RETRY_FAILED, warn_if_left};

mod rejected;
mod retry;
mod ship;

/// The PostgreSQL sink of `cfg`: its spool opened (a torn line set aside, counted in
/// `acc:torn_lines`) and its shipper started.
pub fn sink(cfg: &AccConfig, plane: &Arc<AccPlane>) -> io::Result<Box<dyn Sink>> {
    let conn = cfg.sinks.postgres.as_deref().unwrap_or_default();
    let target = super::pgtls::parse(conn)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("acc.postgres: {e}")))?;
    let (spool, torn) = Spool::open(&cfg.dir.join("spool"), plane.spool_records.clone())?;
    plane.torn_lines.add(torn);
    if spool.records() > 0 {
        tracing::info!(
            "acc: {} records spooled in {} are shipped to PostgreSQL first",
            spool.records(),
            spool.dir().display()
        );
    }
    let mut s = SpoolSink::new(spool.clone(), cfg.spool_max_bytes)?;
    // The tables siplb writes: those a set-aside record shipped again may name.
    let mut tables: Vec<String> = ["acc", "missed_calls", "cdrs"].map(String::from).to_vec();
    for r in &cfg.rules {
        if !tables.contains(&r.table) {
            tables.push(r.table.clone());
        }
    }
    s.shipper = Some(Shipper::spawn(target, spool, Counters::of(plane), tables)?);
    Ok(Box::new(s))
}

/// The shipper thread.
pub struct Shipper {
    /// When set, ship what is synced until then, then stop.
    finish: Arc<Mutex<Option<Instant>>>,
    /// Stop now.
    stop: Arc<AtomicBool>,
    spool: Spool,
    thread: JoinHandle<()>,
}

/// The statistics the shipper adds to.
#[derive(Clone, Default)]
pub struct Counters {
    /// `acc:sink_errors`: each failed connection attempt or batch.
    pub errors: Arc<Counter>,
    /// `acc:rejected_records`.
    pub rejected: Arc<Counter>,
}

impl Counters {
    fn of(plane: &AccPlane) -> Counters {
        Counters {
            errors: plane.sink_errors.clone(),
            rejected: plane.rejected_records.clone(),
        }
    }
}

impl Shipper {
    pub fn spawn(
        target: PgTarget,
        spool: Spool,
        counters: Counters,
        tables: Vec<String>,
    ) -> io::Result<Shipper> {
        let finish: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut run = Run {
            target,
            spool: spool.clone(),
            finish: finish.clone(),
            stop: stop.clone(),
            stages: Stages::default(),
            retry_looked: None,
            retrying: None,
            tables,
            counters,
            trouble: None,
            backoff: BACKOFF_MIN,
            quiet_retry: true,
            schema_failed: None,
            conn_task: None,
        };
        let thread = std::thread::Builder::new()
            .name("siplb-acc-pg".into())
            .spawn(move || rt.block_on(run.run()))?;
        Ok(Shipper {
            finish,
            stop,
            spool,
            thread,
        })
    }

    /// Ships what is left until `deadline` (not less than a second from now), then stops;
    /// what is still spooled is shipped at the next start.
    pub fn finish(self, deadline: Instant) {
        let deadline = deadline.max(Instant::now() + Duration::from_secs(1));
        *self.finish.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.spool.more.notify_one();
        while !self.thread.is_finished() && Instant::now() < deadline + Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            self.stop.store(true, Ordering::Relaxed);
        }
        let left = self.spool.records();
        if left > 0 {
            tracing::warn!(
                "acc: {left} records are left in the spool {}; they are shipped to PostgreSQL at \
                 the next start",
                self.spool.dir().display()
            );
        }
    }
}

struct Run {
    target: PgTarget,
    spool: Spool,
    finish: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    /// The staging tables of this connection, and the tables it knows exist.
    stages: Stages,
    /// When the shipper last looked for a [`RETRY`] file.
    retry_looked: Option<Instant>,
    /// A retry under way.
    retrying: Option<retry::Retrying>,
    /// The tables siplb writes (`acc`, `missed_calls`, `cdrs`, the rules').
    tables: Vec<String>,
    counters: Counters,
    /// Since when records have not been shipping, and what was last logged of it.
    trouble: Option<Trouble>,
    /// The wait before the next attempt after a failure.
    backoff: Duration,
    /// A batch that fails for its connection may be tried once more on a new one, at once
    /// and unlogged: since the last batch landed, it has not been.
    quiet_retry: bool,
    /// What making the tables last said, when it failed (warned once per message).
    schema_failed: Option<String>,
    /// The task that drives the connection's socket: ended with the client, so that a
    /// connection given up on (a timeout while the server hangs) is closed, not left open
    /// with its server backend and transaction.
    conn_task: Option<tokio::task::JoinHandle<()>>,
}

struct Trouble {
    since: Instant,
    logged: Instant,
    message: String,
}

/// What became of a batch that did not land whole.
enum Failed {
    /// The connection failed or timed out: reconnect.
    Connection(String),
    /// The database refused it for its setup (a table's shape, a privilege): retry later.
    Refused(String),
    /// The server answered the connection with an error (a password, a database, a role):
    /// retry later.
    Login(String),
}

impl Failed {
    fn message(&self) -> &String {
        match self {
            Failed::Connection(e) | Failed::Refused(e) | Failed::Login(e) => e,
        }
    }
}

impl Run {
    /// Drops the connection: the next turn makes a new one, with new staging tables.
    fn disconnect(&mut self, client: &mut Option<Client>) {
        *client = None;
        self.close();
        self.stages.clear();
    }

    /// Closes the connection's socket (its client is dropped or never made it).
    fn close(&mut self) {
        if let Some(t) = self.conn_task.take() {
            t.abort();
        }
    }

    fn deadline(&self) -> Option<Instant> {
        *self.finish.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long to wait at most, given the deadline.
    fn at_most(&self, d: Duration) -> Duration {
        self.deadline()
            .map_or(d, |t| d.min(t.saturating_duration_since(Instant::now())))
    }

    async fn run(&mut self) {
        self.run_until_stopped().await;
        self.save_retry();
    }

    async fn run_until_stopped(&mut self) {
        let mut client: Option<Client> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(d) = self.deadline()
                && (self.spool.caught_up() || Instant::now() >= d)
            {
                return;
            }
            let Some(c) = client.as_mut() else {
                match tokio::time::timeout(self.at_most(CONNECT_TIMEOUT), self.connect()).await {
                    Ok(Ok(c)) => {
                        client = Some(c);
                        // Nothing waits: the trouble is over. Else it is once a batch lands
                        // (a table the records cannot go into still fails them).
                        if self.spool.caught_up() {
                            self.recovered();
                        }
                    }
                    Ok(Err(f)) => {
                        self.close();
                        self.failed(&f).await;
                    }
                    Err(_) => {
                        self.close();
                        self.failed(&Failed::Connection("connection timed out".into()))
                            .await;
                    }
                }
                continue;
            };
            // Closed while idle (the server's `idle_session_timeout`, a pooler, a firewall):
            // not an outage. A new connection is made when there is something to ship.
            let idle_closed = |c: &Client| {
                if c.is_closed() {
                    tracing::info!("acc: the PostgreSQL connection was closed; reconnecting");
                }
                c.is_closed()
            };
            let (batch, end, lines) = match self.spool.read(BATCH) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("acc: reading the spool failed: {e}");
                    tokio::time::sleep(self.at_most(Duration::from_secs(1))).await;
                    continue;
                }
            };
            if lines == 0 {
                // Caught up: the records set aside to ship again, if the operator asked.
                if self.retry_due() {
                    if idle_closed(c) {
                        self.disconnect(&mut client);
                        continue;
                    }
                    if let Err(f) = self.retry_step(c).await {
                        self.disconnect(&mut client);
                        self.failed(&f).await;
                    }
                    continue;
                }
                let wait = self.at_most(Duration::from_millis(100));
                let _ = tokio::time::timeout(wait, self.spool.more.notified()).await;
                continue;
            }
            if idle_closed(c) {
                self.disconnect(&mut client);
                continue;
            }
            match self.ship_batch(c, &batch).await {
                Ok(rejected) => {
                    self.quiet_retry = true;
                    if !rejected.is_empty()
                        && let Err(e) = self.set_aside(&batch, &rejected)
                    {
                        // Not moved on: the batch is shipped again (it lands once) and its
                        // refused records are set aside again.
                        tracing::error!("acc: setting refused records aside failed: {e}");
                        tokio::time::sleep(self.at_most(Duration::from_secs(1))).await;
                        continue;
                    }
                    self.recovered();
                    if let Err(e) = self.spool.commit(end, lines) {
                        // It landed; shipping it again is harmless (the primary key).
                        tracing::error!("acc: recording what was shipped failed: {e}");
                        tokio::time::sleep(self.at_most(Duration::from_secs(1))).await;
                    }
                }
                Err(f) => {
                    self.disconnect(&mut client);
                    if matches!(f, Failed::Connection(_))
                        && self.trouble.is_none()
                        && std::mem::take(&mut self.quiet_retry)
                    {
                        // Once, at once and without an alarm: a connection the server
                        // closed while idle is told only when it is used.
                        tracing::info!("acc: PostgreSQL: {}; reconnecting", f.message());
                        continue;
                    }
                    self.failed(&f).await;
                }
            }
        }
    }

    /// Ships `batch`; if the database refuses some of its records (a data exception, a
    /// constraint), halves it until they are found and ships the rest: which were refused,
    /// and why.
    async fn ship_batch(
        &mut self,
        c: &mut Client,
        batch: &[Spooled],
    ) -> Result<Vec<(usize, String)>, Failed> {
        let mut rejected = Vec::new();
        // Ranges still to ship, the next on top.
        let mut todo = vec![(0, batch.len())];
        let mut stages_fresh = false;
        while let Some((a, b)) = todo.pop() {
            let limit = self.at_most(SHIP_TIMEOUT);
            let shipped = {
                let mut shipping = std::pin::pin!(tokio::time::timeout(
                    limit,
                    ship::ship(c, &batch[a..b], &mut self.stages),
                ));
                // A server that holds the batch (a lock, a hung backend) is told long before the
                // batch is given up.
                tokio::select! {
                    r = &mut shipping => r,
                    () = tokio::time::sleep(STALL_WARNING.min(limit)) => {
                        tracing::warn!(
                            "acc: PostgreSQL has not answered a batch of {} records for {} s (a \
                             lock, a hung server?); records spool meanwhile, and the batch is given \
                             up after {} s",
                            b - a,
                            STALL_WARNING.as_secs(),
                            SHIP_TIMEOUT.as_secs()
                        );
                        shipping.await
                    }
                }
            };
            match shipped {
                Ok(Ok(())) => {}
                Ok(Err(e)) if refuses_a_record(&e.error) => {
                    if !std::mem::replace(&mut stages_fresh, true) {
                        // A staging table may have a type the operator has changed since:
                        // made again from the tables as they are, and the range tried again.
                        self.stages
                            .forget(c)
                            .await
                            .map_err(|e| failure(&e, c.is_closed()))?;
                        todo.push((a, b));
                    } else if b - a == 1 {
                        rejected.push((a, describe(&e.error)));
                    } else {
                        let m = a + (b - a) / 2;
                        todo.push((m, b));
                        todo.push((a, m));
                    }
                }
                Ok(Err(e)) => {
                    return Err(failure_in(&e.error, c.is_closed(), e.table.as_deref()));
                }
                Err(_) => {
                    return Err(Failed::Connection(format!(
                        "a batch of {} records was not answered in {} s",
                        b - a,
                        limit.as_secs()
                    )));
                }
            }
        }
        Ok(rejected)
    }

    /// Appends the refused records of `batch` to [`REJECTED`] (synced), logs and counts them.
    fn set_aside(&self, batch: &[Spooled], rejected: &[(usize, String)]) -> io::Result<()> {
        let text: Vec<u8> = rejected
            .iter()
            .flat_map(|(i, error)| rejected::line(&batch[*i], error))
            .collect();
        let path = rejected::append(self.spool.dir(), &text)?;
        for (i, error) in rejected {
            let r = &batch[*i];
            tracing::error!(
                "acc: PostgreSQL refused record {} of table {}: {error}; it is set aside in {} \
                 (acc:rejected_records) and the records after it are shipped",
                r.fields.get(1).cloned().flatten().unwrap_or_default(),
                r.table,
                path.display()
            );
        }
        self.counters.rejected.add(rejected.len() as u64);
        Ok(())
    }

    /// Records are not shipping: said once per trouble (again when its message changes, and
    /// every [`REMIND`]), counted, and waited out with the backoff.
    async fn failed(&mut self, f: &Failed) {
        self.counters.errors.add(1);
        let what = match f {
            Failed::Connection(_) => "PostgreSQL is unreachable",
            Failed::Login(_) => "PostgreSQL refuses siplb's connection",
            Failed::Refused(_) => "PostgreSQL refuses the records",
        };
        let e = f.message();
        let now = Instant::now();
        let dir = self.spool.dir().display().to_string();
        match &mut self.trouble {
            None => {
                tracing::error!(
                    "acc: {what}: {e}; records are spooled in {dir} (acc:spool_records) until \
                     they can be shipped"
                );
                self.trouble = Some(Trouble {
                    since: now,
                    logged: now,
                    message: e.clone(),
                });
            }
            Some(t) if t.message != *e || now - t.logged >= REMIND => {
                tracing::error!(
                    "acc: {what}: {e}; {} records spooled in {dir} for {:.0} s (acc:spool_records)",
                    self.spool.records(),
                    (now - t.since).as_secs_f64()
                );
                t.logged = now;
                t.message.clone_from(e);
            }
            Some(_) => {}
        }
        tokio::time::sleep(self.at_most(self.backoff)).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// A batch landed: the end of a trouble, if there was one.
    fn recovered(&mut self) {
        self.backoff = BACKOFF_MIN;
        if let Some(t) = self.trouble.take() {
            tracing::info!(
                "acc: PostgreSQL is reachable again after {:.1} s; shipping {} spooled records",
                t.since.elapsed().as_secs_f64(),
                self.spool.records()
            );
        }
    }

    /// Connects, makes the tables, and checks that `acc`,
    /// `missed_calls` and `cdrs` have siplb's columns.
    async fn connect(&mut self) -> Result<Client, Failed> {
        let (client, conn) = self.target.connect().await.map_err(|e| {
            // The server said no to siplb's credentials or database (SQLSTATE class 28, 3D,
            // 42): not a server away, busy or starting.
            let answered = |e: &PgError| {
                matches!(e, PgError::Pg(e) if e.as_db_error().is_some_and(|d| {
                    matches!(d.code().code().get(..2), Some("28" | "3D" | "42"))
                }))
            };
            let said = describe_connect(&e);
            if said.contains("password missing") {
                // tokio-postgres's word when the server asks for a password there is none of.
                Failed::Login(format!(
                    "{said} (the server asks for one: give password, or a line of the \
                     passfile or ~/.pgpass that matches)"
                ))
            } else if answered(&e.first) || e.then.as_ref().is_some_and(|(_, e)| answered(e)) {
                Failed::Login(said)
            } else {
                Failed::Connection(said)
            }
        })?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("acc: PostgreSQL connection: {e}");
            }
        });
        if let Some(old) = self.conn_task.replace(task) {
            old.abort();
        }
        let failed = |e: tokio_postgres::Error| failure(&e, client.is_closed());
        // Not a notice per table that exists already.
        client
            .batch_execute("SET client_min_messages = warning")
            .await
            .map_err(failed)?;
        if let Err(e) = client.batch_execute(SCHEMA).await {
            // A role without CREATE: the tables may have been made by hand.
            let e = describe(&e);
            if self.schema_failed.as_deref() != Some(e.as_str()) {
                tracing::warn!(
                    "acc: making the tables of proxy/sql/acc.sql failed ({e}); shipping into \
                     the tables as they are"
                );
                self.schema_failed = Some(e);
            }
        }
        let rows = client
            .query(
                // The catalog, not information_schema: it lists the columns of a table the
                // role may not read (a missing privilege is told by the insert, not as a
                // missing table), and finds the tables on the search path as the insert does.
                "SELECT c.relname::text, a.attname::text FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 WHERE c.oid IN (to_regclass('acc'), to_regclass('missed_calls'), \
                 to_regclass('cdrs')) AND a.attnum > 0 AND NOT a.attisdropped",
                &[],
            )
            .await
            .map_err(failed)?;
        // Read without `Row::get`, which panics on a value of another type (a server that
        // only speaks PostgreSQL's protocol).
        let text =
            |r: &tokio_postgres::Row, i: usize| r.try_get::<_, String>(i).unwrap_or_default();
        let columns: Vec<(String, String)> =
            rows.iter().map(|r| (text(r, 0), text(r, 1))).collect();
        if let Some(e) = shape_error(&columns) {
            return Err(Failed::Refused(e));
        }
        // Whom and how: so that an operator sees TLS is on (or not) without asking the server.
        let session = client
            .query_one(
                "SELECT current_user::text, current_database()::text, \
                 coalesce((SELECT version FROM pg_catalog.pg_stat_ssl \
                 WHERE pid = pg_backend_pid() AND ssl), '')",
                &[],
            )
            .await
            .map_err(failed)?;
        let (user, db, tls) = (text(&session, 0), text(&session, 1), text(&session, 2));
        let how = if tls.is_empty() {
            "without TLS".to_string()
        } else {
            format!("over {tls}")
        };
        tracing::info!("acc: connected to PostgreSQL, database {db} as {user}, {how}");
        Ok(client)
    }
}

/// What a failed statement says of the batch: the database's setup when it answered with a
/// class of error that waiting for does not cure by itself (42: a table or column of
/// another shape, a privilege; 0A, 3F; 25006, a server or role that takes no writes), else
/// the connection.
fn failure(e: &tokio_postgres::Error, closed: bool) -> Failed {
    failure_in(e, closed, None)
}

/// [`failure`] of a statement about `table`, which a refusal names.
fn failure_in(e: &tokio_postgres::Error, closed: bool, table: Option<&str>) -> Failed {
    let setup = e.as_db_error().is_some_and(|d| {
        matches!(d.code().code().get(..2), Some("42" | "0A" | "3F"))
            || *d.code() == tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION
    });
    if setup && !closed {
        let mut why = match table {
            Some(t) => format!("table {t}: {}", describe(e)),
            None => describe(e),
        };
        if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_COLUMN_REFERENCE) {
            why.push_str(&format!(
                " ({} needs a primary key or a unique index on (node, id); a table \
                 partitioned by time cannot have one: see docs/CDR.md, \"Tables\")",
                table.map_or("each of siplb's tables".to_string(), |t| format!(
                    "table {t}"
                ))
            ));
        }
        Failed::Refused(why)
    } else {
        Failed::Connection(describe(e))
    }
}

/// What is wrong with the shape of `acc`, `missed_calls` and `cdrs`, given their
/// `(table, column)` pairs: a table missing, or a column siplb writes that a table lacks
/// (as in Kamailio's own `acc`, whose `id` is a serial and which has no `node`).
fn shape_error(columns: &[(String, String)]) -> Option<String> {
    let mut wrong = Vec::new();
    for (table, wanted) in [
        ("acc", &ACC_COLUMNS[..]),
        ("missed_calls", &ACC_COLUMNS[..]),
        ("cdrs", &CDR_COLUMNS[..]),
    ] {
        let has: Vec<&str> = columns
            .iter()
            .filter(|(t, _)| t == table)
            .map(|(_, c)| c.as_str())
            .collect();
        if has.is_empty() {
            wrong.push(format!("there is no table {table}"));
            continue;
        }
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|c| !has.contains(c))
            .collect();
        if !missing.is_empty() {
            wrong.push(format!(
                "table {table} has no column {}",
                missing.join(", ")
            ));
        }
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{}: siplb's tables are those of proxy/sql/acc.sql (Kamailio's own acc and \
             missed_calls have other columns: rename or drop them, or use another database)",
            wrong.join("; ")
        )
    })
}

/// Whether the database refused a record of the batch rather than the batch's table or the
/// connection: SQLSTATE class 22 (a data exception: a value too long, out of range, a byte
/// it cannot store) or 23 (a constraint the table has).
fn refuses_a_record(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| matches!(d.code().code().get(..2), Some("22" | "23")))
}

/// An error with its causes (tokio-postgres says only `db error` at the top).
fn describe(e: &tokio_postgres::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A failed connection: the first attempt's error, and the second's (`allow`, `prefer`).
fn describe_connect(e: &ConnectError) -> String {
    let one = |e: &PgError| match e {
        PgError::Pg(e) => {
            let s = describe(e);
            // What the protocol's decoder says of bytes that are not PostgreSQL's messages.
            let garbled = ["unexpected message", "bytes remaining", "invalid message"];
            if e.as_db_error().is_none()
                && garbled.iter().any(|g| s.contains(g))
                && !s.contains("PostgreSQL server?")
            {
                format!("{s} (is this a PostgreSQL server?)")
            } else {
                s
            }
        }
        e => e.to_string(),
    };
    let first = one(&e.first);
    match &e.then {
        None => first,
        Some((mode, then)) => {
            let how = match mode {
                tokio_postgres::config::SslMode::Disable => "without TLS",
                _ => "over TLS",
            };
            format!("{first}; then {how}: {}", one(then))
        }
    }
}

#[cfg(test)]
mod tests;
