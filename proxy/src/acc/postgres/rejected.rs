//! Records PostgreSQL refused: set aside in `<acc.dir>/spool/rejected.jsonl`, one JSON object
//! per line (`table`, `record` with a member per column, `error`), and shipped again when
//! the operator renames that file `retry.jsonl` once the table takes them.

use super::super::record::{ACC_COLUMNS, CDR_COLUMNS};
use super::super::spool::Spooled;
use super::ship::columns_of;
use serde_json::{Map, Value};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where refused records are set aside, in the spool's folder.
pub const REJECTED: &str = "rejected.jsonl";
/// What the shipper ships again, in the spool's folder: `rejected.jsonl`, renamed.
pub const RETRY: &str = "retry.jsonl";

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
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    f.write_all(lines)?;
    f.sync_data()?;
    Ok(path)
}

/// A line of [`RETRY`] as a record to ship: written by [`line`], or by siplb before the
/// columns were named (`fields`, in the columns' order).
pub fn parse(text: &[u8]) -> Result<Spooled, String> {
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
    if let Some(fields) = v["fields"].as_array() {
        if fields.len() != ACC_COLUMNS.len() && fields.len() != CDR_COLUMNS.len() {
            return Err(format!("it has {} fields", fields.len()));
        }
        return Ok(Spooled {
            table,
            fields: fields.iter().map(as_text).collect(),
        });
    }
    let record = v["record"]
        .as_object()
        .ok_or("it has no \"record\" object")?;
    let columns: &[&str] = if record.contains_key("disposition") {
        &CDR_COLUMNS
    } else {
        &ACC_COLUMNS
    };
    if let Some(k) = record.keys().find(|k| !columns.contains(&k.as_str())) {
        return Err(format!("\"{k}\" is not a column of siplb's records"));
    }
    Ok(Spooled {
        table,
        fields: columns
            .iter()
            .map(|c| record.get(*c).and_then(as_text))
            .collect(),
    })
}

/// The records of `dir`/[`RETRY`], if there is such a file; a line that is not a record is
/// logged and left out.
pub fn read_retry(dir: &Path) -> io::Result<Option<Vec<Spooled>>> {
    let path = dir.join(RETRY);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let mut out = Vec::new();
    for (n, l) in text.split(|&b| b == b'\n').enumerate() {
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse(l) {
            Ok(r) => out.push(r),
            Err(e) => tracing::error!(
                "acc: {} line {}: not a record siplb set aside ({e}); left out",
                path.display(),
                n + 1
            ),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse(&l).unwrap(), r);
        let acc = Spooled {
            table: "bye log".into(),
            fields: ACC_COLUMNS.iter().map(|c| Some(c.to_string())).collect(),
        };
        assert_eq!(parse(&line(&acc, "e")).unwrap(), acc);
    }

    #[test]
    fn the_positional_lines_of_earlier_versions_read_back_too() {
        let r = cdr();
        let old = serde_json::json!({"table": "cdrs", "fields": r.fields, "error": "x"});
        assert_eq!(parse(old.to_string().as_bytes()).unwrap(), r);
        assert!(parse(br#"{"table":"acc","fields":["a"]}"#).is_err());
        assert!(
            parse(br#"{"table":"acc","record":{"nod":"a"}}"#)
                .unwrap_err()
                .contains("\"nod\"")
        );
        assert!(parse(b"{").is_err());
    }
}
