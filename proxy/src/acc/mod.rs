//! Accounting (Kamailio's `acc`): the records of tables `acc`, `missed_calls` (and any other
//! a rule names) and `cdrs`, built from the shard's typed events, and their encodings (CSV
//! per RFC 4180 with a header row, JSON lines with the same names). The columns are fixed
//! here once, so files and tables never change shape; `docs/CDR.md` documents each.
//!
//! `record`, `encode` and `time` do no I/O and read no clock: times come in the events, the id
//! sequence is given. `files` is the file sink the writer thread drives (batched writes,
//! sync on demand, rotation, torn-line recovery).

pub mod encode;
pub mod files;
pub mod record;
pub mod time;

pub use record::{ACC_COLUMNS, CDR_COLUMNS, Disposition, Field, Ids, Record};
