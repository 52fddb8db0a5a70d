//! Encodings of records: CSV per RFC 4180 (a header row naming the columns, CRLF line ends,
//! fields quoted when they hold a comma, a quote or a line break) and JSON lines (one object
//! per record, the same names; times and reasons as strings, codes and durations as
//! numbers, `vars` as an object, no value as `null`).

use super::record::{Field, Record};

/// The CSV header row of records with `columns`.
pub fn csv_header(columns: &[&str], out: &mut String) {
    out.push_str(&columns.join(","));
    out.push_str("\r\n");
}

fn csv_field(s: &str, out: &mut String) {
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// One CSV line.
pub fn csv_line(r: &Record, out: &mut String) {
    for (i, f) in r.fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&f.as_text(), out);
    }
    out.push_str("\r\n");
}

/// One JSON line.
pub fn json_line(r: &Record, out: &mut String) {
    use serde_json::Value;
    let mut obj = serde_json::Map::new();
    for (name, f) in r.columns().iter().zip(&r.fields) {
        let v = match f {
            Field::Empty => Value::Null,
            Field::Text(s) => Value::from(s.as_str()),
            Field::Int(n) => Value::from(*n),
            Field::Seconds(ms) => {
                // Exactly the decimal text, as a JSON number.
                serde_json::from_str(&f.as_text()).unwrap_or_else(|_| Value::from(*ms as f64 / 1e3))
            }
            Field::Time(_) => Value::from(f.as_text()),
            Field::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::from(s.as_str())),
        };
        obj.insert((*name).into(), v);
    }
    out.push_str(&Value::Object(obj).to_string());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::super::record::{ACC_COLUMNS, Field, Record};
    use super::*;

    fn record() -> Record {
        let mut fields = vec![Field::Empty; ACC_COLUMNS.len()];
        fields[0] = Field::Text("n1".into());
        fields[2] = Field::Text("INVITE".into());
        fields[6] = Field::Int(486);
        fields[7] = Field::Text("Busy, \"really\"".into());
        fields[8] = Field::Time(1_000);
        Record {
            table: "missed_calls".into(),
            fields,
        }
    }

    #[test]
    fn csv_has_a_header_row_and_quotes_what_needs_it() {
        let mut out = String::new();
        csv_header(&ACC_COLUMNS, &mut out);
        csv_line(&record(), &mut out);
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert!(lines[0].starts_with("node,id,method,from_tag"));
        assert_eq!(lines[0].split(',').count(), ACC_COLUMNS.len());
        assert!(
            lines[1].starts_with(
                "n1,,INVITE,,,,486,\"Busy, \"\"really\"\"\",1970-01-01T00:00:01.000Z,"
            ),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn json_lines_use_the_column_names_and_types() {
        let mut out = String::new();
        json_line(&record(), &mut out);
        assert!(out.ends_with('\n') && !out[..out.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["sip_code"], 486);
        assert_eq!(v["sip_reason"], "Busy, \"really\"");
        assert_eq!(v["time"], "1970-01-01T00:00:01.000Z");
        assert!(v["to_tag"].is_null());
        assert_eq!(v.as_object().unwrap().len(), ACC_COLUMNS.len());
    }

    #[test]
    fn seconds_are_json_numbers_with_their_milliseconds() {
        let mut r = record();
        r.fields[6] = Field::Seconds(61_237);
        let mut out = String::new();
        json_line(&r, &mut out);
        assert!(out.contains("\"sip_code\":61.237"), "{out}");
    }
}
