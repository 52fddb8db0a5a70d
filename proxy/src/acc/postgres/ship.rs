//! One batch into PostgreSQL: the rows in `COPY`'s text format, a staging table per table
//! shipped into, and the transaction that moves the rows on with `ON CONFLICT (node, id) DO
//! NOTHING`.
//!
//! A staging table is made from the columns of its table as they are when it is first
//! shipped into on a connection (`CREATE TEMP TABLE … AS SELECT <siplb's columns> FROM
//! <table> WITH NO DATA`: the types, without the constraints or the operator's own
//! columns). Made once, it would keep a type the operator has since changed, and refuse
//! records the table now takes; so the shipper drops them all ([`Stages::forget`]) when
//! the database refuses a record, and they are made again from the tables as they are.

use super::super::record::{ACC_COLUMNS, CDR_COLUMNS};
use super::super::spool::Spooled;
use bytes::Bytes;
use futures_util::SinkExt;
use std::collections::{HashMap, HashSet};
use tokio_postgres::Client;

/// The staging tables of one connection, and the tables a rule names that it made.
#[derive(Debug, Default)]
pub struct Stages {
    /// Table → its staging table.
    of: HashMap<String, String>,
    /// Tables known to exist.
    tables: HashSet<String>,
}

impl Stages {
    /// Drops every staging table, so that each is made again from its table as it is now.
    pub async fn forget(&mut self, client: &Client) -> Result<(), tokio_postgres::Error> {
        if self.of.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self.of.values().map(|s| format!("pg_temp.{s}")).collect();
        client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", names.join(", ")))
            .await?;
        self.of.clear();
        Ok(())
    }

    /// A new connection: its staging tables are still to make.
    pub fn clear(&mut self) {
        self.of.clear();
        self.tables.clear();
    }
}

/// `"name"`, quoted as an SQL identifier.
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A field in COPY's text format. PostgreSQL's text cannot hold a NUL character: it becomes
/// U+FFFD (the files keep it).
pub(super) fn copy_field(f: Option<&str>, out: &mut String) {
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
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// JSON text with every `\u0000` escape made `\ufffd`: `jsonb` cannot hold a NUL.
pub(super) fn json_without_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains("\\u0000") {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let esc = &rest[i..];
        let n = if esc.starts_with("\\u0000") {
            out.push_str("\\ufffd");
            6
        } else {
            // A backslash and the character it escapes (`\\` among them).
            let n = 1 + esc[1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&esc[..n]);
            n
        };
        rest = &esc[n..];
    }
    out.push_str(rest);
    out.into()
}

/// Whether `r` is a CDR (the shape of `cdrs`) rather than a transaction record.
pub(super) fn is_cdr(r: &Spooled) -> bool {
    r.fields.len() == CDR_COLUMNS.len()
}

/// The columns of `r`'s table that siplb writes, in the order of its fields.
pub(super) fn columns_of(r: &Spooled) -> &'static [&'static str] {
    if is_cdr(r) {
        &CDR_COLUMNS
    } else {
        &ACC_COLUMNS
    }
}

/// The rows of `table` in `batch`, in COPY's text format.
pub(super) fn copy_rows<'a>(batch: impl Iterator<Item = &'a Spooled>, out: &mut String) {
    for r in batch {
        let vars = is_cdr(r).then_some(CDR_COLUMNS.len() - 1);
        for (i, f) in r.fields.iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            if Some(i) == vars {
                copy_field(f.as_deref().map(json_without_nul).as_deref(), out);
                continue;
            }
            copy_field(f.as_deref(), out);
        }
        out.push('\n');
    }
}

/// A statement of [`ship`] that failed, and the table it was about (`None`: the transaction's
/// own begin or commit).
#[derive(Debug)]
pub struct ShipError {
    pub table: Option<String>,
    pub error: tokio_postgres::Error,
}

impl From<tokio_postgres::Error> for ShipError {
    fn from(error: tokio_postgres::Error) -> ShipError {
        ShipError { table: None, error }
    }
}

/// Ships `batch` in one transaction, table by table in the order they first appear.
pub async fn ship(
    client: &mut Client,
    batch: &[Spooled],
    stages: &mut Stages,
) -> Result<(), ShipError> {
    let mut order: Vec<&str> = Vec::new();
    for r in batch {
        if !order.contains(&r.table.as_str()) {
            order.push(&r.table);
        }
    }
    let tx = client.transaction().await?;
    // Made in this transaction: known once it commits.
    let mut made = Vec::new();
    let mut staged = Vec::new();
    for table in order {
        into_table(&tx, batch, table, stages, &mut made, &mut staged)
            .await
            .map_err(|error| ShipError {
                table: Some(table.to_string()),
                error,
            })?;
    }
    tx.commit().await?;
    stages.tables.extend(made);
    stages.of.extend(staged);
    Ok(())
}

/// `batch`'s records of `table` into it, through its staging table (made if need be, and
/// noted in `staged`; a rule's table made is noted in `made`).
async fn into_table(
    tx: &tokio_postgres::Transaction<'_>,
    batch: &[Spooled],
    table: &str,
    stages: &Stages,
    made: &mut Vec<String>,
    staged: &mut Vec<(String, String)>,
) -> Result<(), tokio_postgres::Error> {
    let rows = batch.iter().filter(|r| r.table == table);
    let Some(first) = batch.iter().find(|r| r.table == table) else {
        return Ok(());
    };
    let cdr = is_cdr(first);
    let t = ident(table);
    if !cdr && !stages.tables.contains(table) && !matches!(table, "acc" | "missed_calls") {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (LIKE acc INCLUDING ALL)"
        ))
        .await?;
        made.push(table.to_string());
    }
    let cols = columns_of(first).join(", ");
    let stage = match stages.of.get(table) {
        Some(s) => s.clone(),
        None => {
            // Numbered: a table's name may be as long as an identifier may be.
            let s = format!("siplb_stage_{}", stages.of.len() + staged.len());
            tx.batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {s} ON COMMIT DELETE ROWS AS \
                 SELECT {cols} FROM {t} WITH NO DATA"
            ))
            .await?;
            staged.push((table.to_string(), s.clone()));
            s
        }
    };
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
    Ok(())
}
