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
//! The tables are made from `proxy/sql/acc.sql` at every connection (`IF NOT EXISTS`); a
//! table a rule names is made `LIKE acc` on first use.

use super::config::AccConfig;
use super::plane::AccPlane;
use super::record::{ACC_COLUMNS, CDR_COLUMNS};
use super::sink::Sink;
use super::spool::{Spool, SpoolSink, Spooled};
use bytes::Bytes;
use futures_util::SinkExt;
use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

/// The tables, as shipped in the repository.
pub const SCHEMA: &str = include_str!("../../sql/acc.sql");
/// Records per transaction at most.
const BATCH: usize = 5000;
/// How long a connection attempt, or a batch, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SHIP_TIMEOUT: Duration = Duration::from_secs(60);
/// Waits between connection attempts: from the first to the last, doubling.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Staging tables, one per shape, private to the connection.
const STAGE_ACC: &str = "siplb_stage_acc";
const STAGE_CDRS: &str = "siplb_stage_cdrs";

/// Parses the libpq connection string (`acc.postgres`). siplb speaks to PostgreSQL without
/// TLS: a string that requires it is refused here rather than failing at every connection.
pub fn parse(conn: &str) -> Result<tokio_postgres::Config, String> {
    let pg = conn
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a libpq connection string: {e}"))?;
    if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(
            "sslmode=require: siplb connects to PostgreSQL without TLS; use a Unix \
                    socket (host=/run/postgresql) or a private network with sslmode=disable \
                    or prefer"
                .into(),
        );
    }
    Ok(pg)
}

/// The PostgreSQL sink of `cfg`: its spool opened (a torn line set aside, counted in
/// `acc:torn_lines`) and its shipper started.
pub fn sink(cfg: &AccConfig, plane: &Arc<AccPlane>) -> io::Result<Box<dyn Sink>> {
    let conn = cfg.sinks.postgres.as_deref().unwrap_or_default();
    let pg = parse(conn)
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
    s.shipper = Some(Shipper::spawn(pg, spool)?);
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

impl Shipper {
    pub fn spawn(pg: tokio_postgres::Config, spool: Spool) -> io::Result<Shipper> {
        let finish: Arc<Mutex<Option<Instant>>> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut run = Run {
            pg,
            spool: spool.clone(),
            finish: finish.clone(),
            stop: stop.clone(),
            tables: HashSet::new(),
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
    pg: tokio_postgres::Config,
    spool: Spool,
    finish: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    /// Tables known to exist on this connection.
    tables: HashSet<String>,
}

impl Run {
    fn deadline(&self) -> Option<Instant> {
        *self.finish.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long to wait at most, given the deadline.
    fn at_most(&self, d: Duration) -> Duration {
        self.deadline()
            .map_or(d, |t| d.min(t.saturating_duration_since(Instant::now())))
    }

    async fn run(&mut self) {
        let mut client: Option<Client> = None;
        let mut down_since: Option<Instant> = None;
        let mut backoff = BACKOFF_MIN;
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
                        if let Some(t) = down_since.take() {
                            tracing::info!(
                                "acc: PostgreSQL is reachable again after {:.1} s; shipping {} \
                                 spooled records",
                                t.elapsed().as_secs_f64(),
                                self.spool.records()
                            );
                        }
                        backoff = BACKOFF_MIN;
                        client = Some(c);
                    }
                    r => {
                        let e = match r {
                            Ok(Err(e)) => describe(&e),
                            _ => "connection timed out".into(),
                        };
                        if down_since.is_none() {
                            down_since = Some(Instant::now());
                            tracing::error!(
                                "acc: PostgreSQL is unreachable: {e}; records are spooled in {} \
                                 (acc:spool_records) until it is back",
                                self.spool.dir().display()
                            );
                        }
                        tokio::time::sleep(self.at_most(backoff)).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
                continue;
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
                let wait = self.at_most(Duration::from_millis(100));
                let _ = tokio::time::timeout(wait, self.spool.more.notified()).await;
                continue;
            }
            let shipped = tokio::time::timeout(
                self.at_most(SHIP_TIMEOUT),
                ship(c, &batch, &mut self.tables),
            )
            .await;
            match shipped {
                Ok(Ok(())) => {
                    if let Err(e) = self.spool.commit(end, lines) {
                        // It landed; shipping it again is harmless (the primary key).
                        tracing::error!("acc: recording what was shipped failed: {e}");
                        tokio::time::sleep(self.at_most(Duration::from_secs(1))).await;
                    }
                }
                r => {
                    let e = match r {
                        Ok(Err(e)) => describe(&e),
                        _ => "timed out".into(),
                    };
                    if down_since.is_none() {
                        down_since = Some(Instant::now());
                        tracing::error!(
                            "acc: shipping to PostgreSQL failed: {e}; records are spooled in {} \
                             (acc:spool_records) and shipped again",
                            self.spool.dir().display()
                        );
                    }
                    client = None;
                    self.tables.clear();
                }
            }
        }
    }

    /// Connects, makes the tables and the staging tables.
    async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.pg.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("acc: PostgreSQL connection: {e}");
            }
        });
        // Not a notice per table that exists already.
        client
            .batch_execute("SET client_min_messages = warning")
            .await?;
        if let Err(e) = client.batch_execute(SCHEMA).await {
            // A role without CREATE: the tables may have been made by hand.
            tracing::warn!(
                "acc: making the tables of proxy/sql/acc.sql failed ({}); shipping into the \
                 tables as they are",
                describe(&e)
            );
        }
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {STAGE_ACC} (LIKE acc) ON COMMIT DELETE ROWS; \
                 CREATE TEMP TABLE IF NOT EXISTS {STAGE_CDRS} (LIKE cdrs) ON COMMIT DELETE ROWS"
            ))
            .await?;
        Ok(client)
    }
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

/// `"name"`, quoted as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A field in COPY's text format.
fn copy_field(f: Option<&str>, out: &mut String) {
    let Some(s) = f else {
        out.push_str("\\N");
        return;
    };
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The rows of `table` in `batch`, in COPY's text format.
fn copy_rows<'a>(batch: impl Iterator<Item = &'a Spooled>, out: &mut String) {
    for r in batch {
        for (i, f) in r.fields.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            copy_field(f.as_deref(), out);
        }
        out.push('\n');
    }
}

/// Ships `batch` in one transaction, table by table in the order they first appear.
async fn ship(
    client: &mut Client,
    batch: &[Spooled],
    tables: &mut HashSet<String>,
) -> Result<(), tokio_postgres::Error> {
    let mut order: Vec<&str> = Vec::new();
    for r in batch {
        if !order.contains(&r.table.as_str()) {
            order.push(&r.table);
        }
    }
    let tx = client.transaction().await?;
    let mut made = Vec::new();
    for table in order {
        let rows = batch.iter().filter(|r| r.table == table);
        let cdr = batch
            .iter()
            .find(|r| r.table == table)
            .is_some_and(|r| r.fields.len() == CDR_COLUMNS.len());
        let (stage, columns): (_, &[&str]) = if cdr {
            (STAGE_CDRS, &CDR_COLUMNS)
        } else {
            (STAGE_ACC, &ACC_COLUMNS)
        };
        let t = ident(table);
        if !cdr && !tables.contains(table) && !matches!(table, "acc" | "missed_calls") {
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (LIKE acc INCLUDING ALL)"
            ))
            .await?;
            made.push(table.to_string());
        }
        let cols = columns.join(", ");
        let mut text = String::with_capacity(batch.len() * 256);
        copy_rows(rows, &mut text);
        let sink = tx
            .copy_in::<_, Bytes>(&format!("COPY {stage} ({cols}) FROM STDIN"))
            .await?;
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from(text)).await?;
        sink.finish().await?;
        tx.batch_execute(&format!(
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT (node, id) DO \
             NOTHING; TRUNCATE {stage}"
        ))
        .await?;
    }
    tx.commit().await?;
    tables.extend(made);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_and_nulls() {
        let r = Spooled {
            table: "acc".into(),
            fields: vec![Some("a\tb\\c\nd".into()), None, Some("x".into())],
        };
        let mut out = String::new();
        copy_rows([&r].into_iter(), &mut out);
        assert_eq!(out, "a\\tb\\\\c\\nd\t\\N\tx\n");
    }

    #[test]
    fn identifiers_are_quoted_and_the_schema_has_the_columns() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        for c in CDR_COLUMNS.iter().chain(&ACC_COLUMNS) {
            assert!(SCHEMA.contains(&format!("\n    {c} ")), "{c}");
        }
        assert!(parse("host=/tmp port=5 user=postgres dbname=x").is_ok());
        assert!(parse("host='unterminated").is_err());
    }
}
