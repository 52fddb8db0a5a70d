//! Accounting (Kamailio's `acc`): the records of tables `acc`, `missed_calls` (and any other
//! a rule names) and `cdrs`, built from the shard's typed events, and their encodings (CSV
//! per RFC 4180 with a header row, JSON lines with the same names). The columns are fixed
//! here once, so files and tables never change shape; `docs/CDR.md` documents each.
//!
//! How records travel: each worker's [`Accountant`](accountant::Accountant) turns its
//! shard's events into records and pushes them into the worker's own bounded queue
//! ([`AccPlane`](plane::AccPlane)); one writer thread ([`writer`]) drains every queue in
//! batches into the sinks (a log line, files, PostgreSQL), syncing at the group-commit
//! interval. Nothing accepted is lost: while records cannot move on, new INVITEs get 503.
//!
//! `record`, `encode` and `time` do no I/O and read no clock: times come in the events, the id
//! sequence is given. `files` is the file sink the writer thread drives (batched writes,
//! sync on demand, rotation, torn-line recovery), `journal` its group commit (one durable
//! journal write per round, checkpoints, replay after a crash) over `direct` (block-aligned
//! `O_DIRECT | O_DSYNC` writes); `spool` and `postgres` the PostgreSQL sink (a
//! durable spool the writer fills, a shipper thread that empties it into the database), with
//! `pgconn` its connection string as libpq reads it and `pgtls` its TLS as libpq's `sslmode`
//! asks for it.

pub mod accountant;
pub mod config;
mod direct;
pub mod encode;
pub mod files;
pub mod journal;
pub mod pgconn;
pub mod pglimit;
pub mod pgtls;
pub mod plane;
pub mod postgres;
pub mod record;
pub mod sink;
pub mod spool;
pub mod time;
pub mod writer;

pub use record::{ACC_COLUMNS, CDR_COLUMNS, Disposition, Field, Ids, Record};
