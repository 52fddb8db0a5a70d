//! Records PostgreSQL refused: set aside in `<acc.dir>/spool/rejected.jsonl`, one JSON object
//! per line (`table`, `record` with a member per column, `error`), and shipped again when
//! the operator renames that file `retry.jsonl` once the table takes them; and what an
//! earlier run left, said at a start without `acc.postgres`.

use super::super::config::AccConfig;
use super::super::record::{ACC_COLUMNS, CDR_COLUMNS};
use super::super::spool::{Spool, Spooled};
use super::ship::columns_of;
use serde_json::{Map, Value};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where refused records are set aside, in the spool's folder.
pub const REJECTED: &str = "rejected.jsonl";
/// What the shipper ships again, in the spool's folder: `rejected.jsonl`, renamed.
pub const RETRY: &str = "retry.jsonl";
/// [`RETRY`] once the database refused its records for its setup, left for the operator.
pub const RETRY_FAILED: &str = "retry-failed.jsonl";
/// Lines of [`RETRY`] that are not records, set aside as they were.
pub const RETRY_BAD: &str = "retry-bad.jsonl";
/// [`RETRY`] taken by the shipper: what it is shipping (a restart finishes it).
pub const SHIPPING: &str = "retry-shipping.jsonl";

/// A record of [`RETRY`], and its line as written.
pub type RetryLine = (Spooled, Vec<u8>);

/// One line of [`REJECTED`]: the record with its columns named (the CDR's variables as the
/// JSON object they are), and the server's message.
pub fn line(r: &Spooled, error: &str) -> Vec<u8> {
    let mut record = Map::new();
    for (col, f) in columns_of(r).iter().zip(&r.fields) {
        let v = match f {
            None => Value::Null,
            Some(s) if *col == "vars" => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            Some(s) => Value::String(s.clone()),
        };
        record.insert((*col).to_string(), v);
    }
    let mut obj = Map::new();
    obj.insert("table".into(), Value::String(r.table.clone()));
    obj.insert("record".into(), Value::Object(record));
    obj.insert("error".into(), Value::String(error.to_string()));
    let mut out = serde_json::to_vec(&Value::Object(obj)).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Appends `lines` to `dir`/[`REJECTED`], synced.
pub fn append(dir: &Path, lines: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(REJECTED);
    append_to(&path, lines)?;
    Ok(path)
}

/// Appends `lines` to the file at `path` (made if need be), synced.
pub fn append_to(path: &Path, lines: &[u8]) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    f.write_all(lines)?;
    f.sync_data()
}

/// A line of [`RETRY`] as a record to ship: written by [`line`], or by siplb before the
/// columns were named (`fields`, in the columns' order); its table one of `tables`, those
/// siplb writes.
pub fn parse(text: &[u8], tables: &[String]) -> Result<Spooled, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let table = v["table"]
        .as_str()
        .ok_or("it has no \"table\"")?
        .to_string();
    let as_text = |v: &Value| match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    };
    if !tables.contains(&table) {
        return Err(format!(
            "\"{table}\" is not a table siplb writes ({})",
            tables.join(", ")
        ));
    }
    // `cdrs` holds CDRs; every other table (`acc`, `missed_calls`, a rule's) transaction
    // records.
    let columns: &[&str] = if table == "cdrs" {
        &CDR_COLUMNS
    } else {
        &ACC_COLUMNS
    };
    if let Some(fields) = v["fields"].as_array() {
        if fields.len() != columns.len() {
            return Err(format!(
                "it has {} fields where table {table} has {}",
                fields.len(),
                columns.len()
            ));
        }
        return Ok(Spooled {
            table,
            fields: fields.iter().map(as_text).collect(),
        });
    }
    let record = v["record"]
        .as_object()
        .ok_or("it has no \"record\" object")?;
    if let Some(k) = record.keys().find(|k| !columns.contains(&k.as_str())) {
        return Err(format!("\"{k}\" is not a column of table {table}"));
    }
    if let Some(c) = columns.iter().find(|c| !record.contains_key(**c)) {
        return Err(format!("its record has no \"{c}\" (null for no value)"));
    }
    Ok(Spooled {
        table,
        fields: columns
            .iter()
            .map(|c| record.get(*c).and_then(as_text))
            .collect(),
    })
}

/// The records of the file at `path` ([`SHIPPING`]), each with its line; a line that is not
/// a record is logged and moved to [`RETRY_BAD`] beside it, as it was, and the file
/// rewritten without it.
pub fn read_retry(path: &Path, tables: &[String]) -> io::Result<Vec<RetryLine>> {
    let text = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let bad_path = path.with_file_name(RETRY_BAD);
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (n, l) in text.split(|&b| b == b'\n').enumerate() {
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse(l, tables) {
            Ok(r) => out.push((r, l.to_vec())),
            Err(e) => {
                tracing::error!(
                    "acc: {RETRY} line {}: not a record siplb set aside ({e}); moved to {}",
                    n + 1,
                    bad_path.display()
                );
                bad.extend_from_slice(l);
                bad.push(b'\n');
            }
        }
    }
    if !bad.is_empty() {
        append_to(&bad_path, &bad)?;
        replace(path, &lines(&out))?;
    }
    Ok(out)
}

/// The lines of `records`, as they were read.
pub fn lines(records: &[RetryLine]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|(_, line)| line.iter().copied().chain([b'\n']))
        .collect()
}

/// Replaces the file at `path` with `text`, synced, atomically.
pub fn replace(path: &Path, text: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Without `acc.postgres`: records an earlier run spooled and never shipped are said at
/// start, not left in the spool without a word.
pub fn warn_if_left(cfg: &AccConfig) {
    let dir = cfg.dir.join("spool");
    if !dir.is_dir() {
        return;
    }
    match Spool::open(&dir, std::sync::Arc::default()) {
        Ok((s, _)) if s.records() > 0 => tracing::warn!(
            "acc: {} records in {} were never shipped to PostgreSQL, and acc.postgres is not \
             set: they stay there until it is set again",
            s.records(),
            dir.display()
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("acc: {}: {e}", dir.display()),
    }
    for f in [REJECTED, RETRY, SHIPPING, RETRY_FAILED, RETRY_BAD] {
        if dir.join(f).exists() {
            tracing::warn!(
                "acc: {} holds records PostgreSQL refused, and acc.postgres is not set",
                dir.join(f).display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<String> {
        ["acc", "missed_calls", "cdrs", "bye_log"]
            .map(String::from)
            .to_vec()
    }

    fn cdr() -> Spooled {
        let mut fields: Vec<Option<String>> =
            CDR_COLUMNS.iter().map(|c| Some(format!("v-{c}"))).collect();
        fields[3] = None;
        *fields.last_mut().unwrap() = Some(r#"{"tariff":"gold \"plus\""}"#.into());
        Spooled {
            table: "cdrs".into(),
            fields,
        }
    }

    #[test]
    fn a_set_aside_record_names_its_columns_and_reads_back_as_it_was() {
        let r = cdr();
        let l = line(&r, "value too long");
        let v: Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["table"], "cdrs");
        assert_eq!(v["record"]["callid"], "v-callid");
        assert_eq!(v["record"]["from_tag"], Value::Null);
        assert_eq!(v["record"]["vars"]["tariff"], "gold \"plus\"");
        assert_eq!(v["error"], "value too long");
        assert_eq!(parse(&l, &known()).unwrap(), r);
        let acc = Spooled {
            table: "bye_log".into(),
            fields: ACC_COLUMNS.iter().map(|c| Some(c.to_string())).collect(),
        };
        assert_eq!(parse(&line(&acc, "e"), &known()).unwrap(), acc);
        // A record edited by hand must still have every column of its table's shape.
        for (bad, says) in [
            (
                r#"{"table":"cdrs","record":{"node":"x"},"error":"e"}"#,
                "no \"id\"",
            ),
            (
                r#"{"table":"acc","record":{"disposition":"x"}}"#,
                "\"disposition\"",
            ),
            (r#"{"table":"","record":{}}"#, "not a table"),
            (
                r#"{"table":"pg_class","record":{}}"#,
                "not a table siplb writes (acc,",
            ),
        ] {
            let e = parse(bad.as_bytes(), &known()).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_line_of_retry_jsonl_that_is_not_a_record_is_moved_aside_not_lost() {
        let dir = std::env::temp_dir().join(format!("siplb-retry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read_retry(&dir.join(SHIPPING), &known()).is_err());
        let good = line(&cdr(), "e");
        let mut text = good.clone();
        text.extend_from_slice(b"{\"table\": \"cdrs\", \"record\": {\"calid\": \"x\"}}\n\n");
        text.extend_from_slice(&good);
        std::fs::write(dir.join(SHIPPING), &text).unwrap();
        let read = read_retry(&dir.join(SHIPPING), &known()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].0, cdr());
        // The bad line is in retry-bad.jsonl as it was, and the file has the records.
        let bad = std::fs::read_to_string(dir.join(RETRY_BAD)).unwrap();
        assert!(bad.contains("calid") && bad.lines().count() == 1, "{bad}");
        let left = std::fs::read(dir.join(SHIPPING)).unwrap();
        assert_eq!(left, [good.clone(), good].concat());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_positional_lines_of_earlier_versions_read_back_too() {
        let r = cdr();
        let old = serde_json::json!({"table": "cdrs", "fields": r.fields, "error": "x"});
        assert_eq!(parse(old.to_string().as_bytes(), &known()).unwrap(), r);
        assert!(parse(br#"{"table":"acc","fields":["a"]}"#, &known()).is_err());
        assert!(
            parse(br#"{"table":"acc","record":{"nod":"a"}}"#, &known())
                .unwrap_err()
                .contains("\"nod\"")
        );
        assert!(parse(b"{", &known()).is_err());
    }
}
