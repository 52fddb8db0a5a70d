//! Encodings of records: CSV per RFC 4180 (a header row naming the columns, CRLF line ends,
//! fields quoted when they hold a comma, a quote or a line break) and JSON lines (one object
//! per record, the same names; times and reasons as strings, codes and durations as
//! numbers, `vars` as an object, no value as `null`).

use super::record::{ACC_COLUMNS, CDR_COLUMNS, Field, Record};
use super::time::{write_int, write_rfc3339_ms, write_seconds_ms};
use std::sync::LazyLock;

/// The CSV header row of records with `columns`.
pub fn csv_header(columns: &[&str], out: &mut String) {
    out.push_str(&columns.join(","));
    out.push_str("\r\n");
}

/// Bytes a CSV field quotes for (bit 0), a JSON string escapes (bit 1), and a CSV field
/// writes `%XX` (bit 2: control characters but tab and the line breaks, which CSV has no
/// escape for and a terminal showing the file would act on).
static SPECIAL: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = JSON | CSV_CONTROL;
        c += 1;
    }
    t[b'\t' as usize] = JSON;
    t[b'\n' as usize] = JSON;
    t[b'\r' as usize] = JSON;
    t[0x7f] = CSV_CONTROL;
    t[b',' as usize] = CSV;
    t[b'\n' as usize] |= CSV;
    t[b'\r' as usize] |= CSV;
    t[b'"' as usize] = CSV | JSON;
    t[b'\\' as usize] = JSON;
    t
};
const CSV: u8 = 1;
const JSON: u8 = 2;
const CSV_CONTROL: u8 = 4;

/// The classes of [`SPECIAL`] that bytes of `b` are of, all together (one table lookup a
/// byte, no branch).
#[inline]
fn classes(b: &[u8]) -> u8 {
    b.iter().fold(0, |any, &c| any | SPECIAL[usize::from(c)])
}

fn csv_text(s: &str, out: &mut String) {
    csv_text_of(s, classes(s.as_bytes()), out);
}

/// Whether no byte of `b` is one either format quotes or escapes ([`SPECIAL`]), written as
/// comparisons rather than a table so that the compiler checks 32 bytes a step: records
/// nearly always hold none, and one look through all their text fields then spares a look
/// at each.
#[inline]
fn plain(b: &[u8]) -> bool {
    !b.iter().fold(false, |any, &c| {
        any | (c < 0x20) | (c == 0x7f) | (c == b',') | (c == b'"') | (c == b'\\')
    })
}

/// [`csv_text`] of a text whose [`classes`] are known.
fn csv_text_of(s: &str, classes: u8, out: &mut String) {
    if classes & CSV_CONTROL != 0 {
        let mut shown = String::with_capacity(s.len() + 8);
        for c in s.chars() {
            match c {
                '\t' | '\n' | '\r' => shown.push(c),
                c if c.is_ascii_control() => {
                    let _ =
                        std::fmt::Write::write_fmt(&mut shown, format_args!("%{:02X}", c as u8));
                }
                c => shown.push(c),
            }
        }
        let classes = classes & !CSV_CONTROL;
        return csv_text_of(&shown, classes, out);
    }
    let b = s.as_bytes();
    if classes & CSV == 0 {
        out.push_str(s);
        return;
    }
    out.push('"');
    let mut start = 0;
    for q in memchr::memchr_iter(b'"', b) {
        // The quote itself goes out with the next slice: doubled.
        out.push_str(&s[start..=q]);
        start = q;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// One CSV line. Written in place, without a temporary per field: it runs for every record.
/// Text fields are copied as they are when none holds a byte to quote ([`plain`]).
pub fn csv_line(r: &Record, out: &mut String) {
    let plain = plain(r.texts().as_bytes());
    for (i, f) in r.fields().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match f {
            Field::Empty => {}
            Field::Text(s) if plain => out.push_str(s),
            Field::Text(s) | Field::Json(s) => csv_text(s, out),
            Field::Int(n) => write_int(n, out),
            Field::Seconds(ms) => write_seconds_ms(ms, out),
            Field::Time(ms) => write_rfc3339_ms(ms, out),
        }
    }
    out.push_str("\r\n");
}

/// A JSON string, escaped (RFC 8259 §7).
pub(super) fn json_text(s: &str, out: &mut String) {
    json_text_of(s, classes(s.as_bytes()), out);
}

/// [`json_text`] of a text whose [`classes`] are known.
fn json_text_of(s: &str, classes: u8, out: &mut String) {
    out.push('"');
    // Most fields need no escape: one copy.
    if classes & JSON == 0 {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = std::fmt::Write::write_fmt(out, format_args!("\\u{b:04x}"));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Each column's key as a JSON line writes it, with what comes before it (`{"node":`,
/// `,"id":` …): one push per field.
fn json_keys(columns: &[&str]) -> Vec<String> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{}\"{c}\":", if i == 0 { '{' } else { ',' }))
        .collect()
}

/// [`json_keys`], each followed by the quote that opens a string value (`,"callid":"`).
fn json_keys_quoted(columns: &[&str]) -> Vec<String> {
    json_keys(columns).into_iter().map(|k| k + "\"").collect()
}

static ACC_KEYS: LazyLock<Vec<String>> = LazyLock::new(|| json_keys(&ACC_COLUMNS));
static CDR_KEYS: LazyLock<Vec<String>> = LazyLock::new(|| json_keys(&CDR_COLUMNS));
static ACC_KEYS_QUOTED: LazyLock<Vec<String>> = LazyLock::new(|| json_keys_quoted(&ACC_COLUMNS));
static CDR_KEYS_QUOTED: LazyLock<Vec<String>> = LazyLock::new(|| json_keys_quoted(&CDR_COLUMNS));

/// The JSON keys of `r`'s columns, the first with the line's `{`; a record of no field gets
/// its `{` here.
fn json_start(r: &Record, out: &mut String) -> &'static [String] {
    if r.is_empty() {
        out.push('{');
    }
    if r.len() == CDR_COLUMNS.len() {
        &CDR_KEYS
    } else {
        &ACC_KEYS
    }
}

/// [`json_start`], with the keys' quoted forms ([`json_keys_quoted`]).
fn json_start_quoted(r: &Record, out: &mut String) -> (&'static [String], &'static [String]) {
    let keys = json_start(r, out);
    if r.len() == CDR_COLUMNS.len() {
        (keys, &CDR_KEYS_QUOTED)
    } else {
        (keys, &ACC_KEYS_QUOTED)
    }
}

/// One JSON line, written in place (times and reasons as strings, codes and durations as
/// numbers, `vars` as the object it is). Text fields are copied as they are when none holds
/// a byte to escape ([`plain`]).
pub fn json_line(r: &Record, out: &mut String) {
    let plain = plain(r.texts().as_bytes());
    let keys = json_start(r, out);
    for (key, f) in keys.iter().zip(r.fields()) {
        out.push_str(key);
        match f {
            Field::Empty => out.push_str("null"),
            Field::Text(s) if plain => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            Field::Text(s) => json_text(s, out),
            Field::Int(n) => write_int(n, out),
            Field::Seconds(ms) => write_seconds_ms(ms, out),
            Field::Time(ms) => {
                out.push('"');
                write_rfc3339_ms(ms, out);
                out.push('"');
            }
            // Made by serde_json (the dialog's variables): JSON already.
            Field::Json(s) => out.push_str(s),
        }
    }
    out.push_str("}\n");
}

/// One record as a CSV line into `csv` and a JSON line into `json`: [`csv_line`] and
/// [`json_line`] in one pass, each field read, scanned and formatted once (times, numbers)
/// and copied into the other line. The writer encodes every record both ways when both
/// formats are on, and reading a record twice cost more than the second copy (measured in
/// docs/BENCHMARKS.md, "Accounting").
pub fn csv_and_json_lines(r: &Record, csv: &mut String, json: &mut String) {
    lines(r, plain(r.texts().as_bytes()), csv, json);
}

/// [`csv_and_json_lines`], told whether the record's text fields hold no byte to quote or
/// escape (nearly always): then each is copied as it is into both lines, with no look at
/// each and a string's JSON key written together with its opening quote.
fn lines(r: &Record, plain: bool, csv: &mut String, json: &mut String) {
    let (keys, quoted) = json_start_quoted(r, json);
    for (i, ((key, key_quoted), f)) in keys.iter().zip(quoted).zip(r.fields()).enumerate() {
        if i > 0 {
            csv.push(',');
        }
        let at = csv.len();
        match f {
            Field::Text(s) if plain => {
                csv.push_str(s);
                json.push_str(key_quoted);
                json.push_str(s);
                json.push('"');
            }
            Field::Text(s) => {
                json.push_str(key);
                // One scan says what either format must do.
                let c = classes(s.as_bytes());
                csv_text_of(s, c, csv);
                json_text_of(s, c, json);
            }
            Field::Time(ms) => {
                write_rfc3339_ms(ms, csv);
                json.push_str(key_quoted);
                json.push_str(&csv[at..]);
                json.push('"');
            }
            Field::Empty => {
                json.push_str(key);
                json.push_str("null");
            }
            Field::Json(s) => {
                json.push_str(key);
                csv_text(s, csv);
                json.push_str(s);
            }
            Field::Int(n) => {
                json.push_str(key);
                write_int(n, csv);
                json.push_str(&csv[at..]);
            }
            Field::Seconds(ms) => {
                json.push_str(key);
                write_seconds_ms(ms, csv);
                json.push_str(&csv[at..]);
            }
        }
    }
    csv.push_str("\r\n");
    json.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::super::record::{Field, Record};
    use super::*;

    fn fields() -> Vec<Field<'static>> {
        let mut fields = vec![Field::Empty; ACC_COLUMNS.len()];
        fields[0] = Field::Text("n1");
        fields[2] = Field::Text("INVITE");
        fields[6] = Field::Int(486);
        fields[7] = Field::Text("Busy, \"really\"");
        fields[8] = Field::Time(1_000);
        fields
    }

    fn record() -> Record {
        Record::new("missed_calls", &fields())
    }

    #[test]
    fn control_characters_are_written_percent_escaped_in_csv_and_escaped_in_json() {
        let mut f = fields();
        f[7] = Field::Text("a\u{1b}]0;owned\u{7}b\tc\u{7f}d\r\ne");
        let r = Record::new("acc", &f);
        let (mut csv, mut json) = (String::new(), String::new());
        csv_line(&r, &mut csv);
        assert!(
            csv.contains(",\"a%1B]0;owned%07b\tc%7Fd\r\ne\","),
            "tab and line breaks kept (quoted), the rest %XX: {csv:?}"
        );
        assert!(!csv.bytes().any(|b| b == 0x1b || b == 0x07 || b == 0x7f));
        json_line(&r, &mut json);
        assert!(json.contains(r#""a\u001b]0;owned\u0007b\tc"#), "{json:?}");
        let (mut csv2, mut json2) = (String::new(), String::new());
        csv_and_json_lines(&r, &mut csv2, &mut json2);
        assert_eq!((csv2, json2), (csv, json));
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
    fn json_strings_are_escaped_and_every_line_parses() {
        let mut f = fields();
        f[7] = Field::Text("tab\there \"q\" back\\slash \u{1} é");
        f[16] = Field::Json("{\"a\":\"b\"}");
        let r = Record::new("acc", &f);
        let mut out = String::new();
        json_line(&r, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["sip_reason"], "tab\there \"q\" back\\slash \u{1} é");
        assert_eq!(v["gateway"]["a"], "b");
    }

    #[test]
    fn every_byte_a_format_treats_specially_is_quoted_or_escaped() {
        for c in (0u8..0x80).map(char::from) {
            let s = format!("a{c}b");
            let mut csv = String::new();
            csv_text(&s, &mut csv);
            let quoted = [',', '"', '\n', '\r'].contains(&c);
            assert_eq!(csv.starts_with('"'), quoted, "{c:?}: {csv}");
            let mut json = String::new();
            json_text(&s, &mut json);
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s, "{c:?}: {json}");
        }
    }

    #[test]
    fn both_lines_in_one_pass_are_the_lines_each_encoder_writes() {
        let mut f = fields();
        f[3] = Field::Text("tag,with \"quotes\"");
        f[7] = Field::Text("tab\there \\ and a\r\nline break");
        f[9] = Field::Seconds(61_237);
        f[16] = Field::Json("{\"a\":\"b, c\"}");
        let mut cdr = vec![Field::Text("x"); CDR_COLUMNS.len()];
        cdr[14] = Field::Int(2);
        cdr[15] = Field::Time(1_700_000_000_123);
        cdr[21] = Field::Empty;
        let records = [
            Record::new("acc", &f),
            Record::new("cdrs", &cdr),
            Record::new("missed_calls", &fields()),
        ];
        for r in &records {
            let (mut csv, mut json) = (String::from("before\r\n"), String::from("{}\n"));
            let (mut csv1, mut json1) = (csv.clone(), json.clone());
            csv_and_json_lines(r, &mut csv, &mut json);
            csv_line(r, &mut csv1);
            json_line(r, &mut json1);
            assert_eq!(csv, csv1);
            assert_eq!(json, json1);
        }
    }

    #[test]
    fn records_with_nothing_to_escape_are_written_as_those_with_something() {
        let mut acc = fields();
        acc[7] = Field::Text("Busy here");
        acc[9] = Field::Seconds(61_237);
        let mut cdr = vec![Field::Text("x"); CDR_COLUMNS.len()];
        cdr[14] = Field::Int(2);
        cdr[15] = Field::Time(1_700_000_000_123);
        cdr[21] = Field::Empty;
        cdr[25] = Field::Text("Übergabe");
        let mut cdr_vars = cdr.clone();
        cdr_vars[29] = Field::Json("{\"a\":\"b, c\"}");
        let records = [
            Record::new("acc", &acc),
            Record::new("cdrs", &cdr),
            Record::new("cdrs", &cdr_vars),
        ];
        for r in &records {
            assert!(plain(r.texts().as_bytes()), "{r:?}");
            let (mut csv, mut json) = (String::new(), String::new());
            let (mut csv1, mut json1) = (String::new(), String::new());
            lines(r, true, &mut csv, &mut json);
            lines(r, false, &mut csv1, &mut json1);
            let (mut csv2, mut json2) = (String::new(), String::new());
            csv_line(r, &mut csv2);
            json_line(r, &mut json2);
            assert_eq!(csv2, csv1);
            assert_eq!(json2, json1);
            assert_eq!((csv, json), (csv1, json1));
        }
        // Any byte either format treats specially sends a record the escaping way.
        for c in (0u8..0x80).filter(|&c| SPECIAL[usize::from(c)] != 0) {
            let text = format!("a{}b", char::from(c));
            let mut f = acc.clone();
            f[7] = Field::Text(&text);
            let r = Record::new("acc", &f);
            assert!(!plain(r.texts().as_bytes()), "{c:#x}");
        }
        assert!(
            (0u8..=0xff)
                .filter(|&c| SPECIAL[usize::from(c)] == 0)
                .all(|c| plain(&[c]))
        );
    }

    #[test]
    fn seconds_are_json_numbers_with_their_milliseconds() {
        let mut f = fields();
        f[6] = Field::Seconds(61_237);
        let r = Record::new("acc", &f);
        let mut out = String::new();
        json_line(&r, &mut out);
        assert!(out.contains("\"sip_code\":61.237"), "{out}");
    }
}
