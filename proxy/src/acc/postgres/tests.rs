//! Tests of the PostgreSQL sink's text and statements (no server).

use super::ship::{copy_field, copy_rows, ident, json_without_nul};
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
    // PostgreSQL stores no NUL, in text or in jsonb.
    let mut out = String::new();
    copy_field(Some("a\0b"), &mut out);
    assert_eq!(out, "a\u{FFFD}b");
    assert_eq!(
        json_without_nul(r#"{"a":"x\u0000y\\u0000","b\u0000":"\"é\u00001"}"#),
        r#"{"a":"x\ufffdy\\u0000","b\ufffd":"\"é\ufffd1"}"#
    );
    assert_eq!(json_without_nul(r#"{"a":"\\"}"#), r#"{"a":"\\"}"#);
}

#[test]
fn a_table_of_another_shape_is_named_with_what_it_lacks() {
    let mut cols: Vec<(String, String)> = Vec::new();
    for (t, wanted) in [
        ("acc", &ACC_COLUMNS[..]),
        ("missed_calls", &ACC_COLUMNS[..]),
        ("cdrs", &CDR_COLUMNS[..]),
    ] {
        cols.extend(wanted.iter().map(|c| (t.to_string(), c.to_string())));
    }
    assert_eq!(shape_error(&cols), None);
    // Kamailio's own acc: an integer id, no node, none of siplb's extra columns.
    cols.retain(|(t, c)| t != "acc" || !matches!(c.as_str(), "node" | "account"));
    cols.retain(|(t, _)| t != "cdrs");
    let e = shape_error(&cols).unwrap();
    assert!(
        e.starts_with("table acc has no column node, account; there is no table cdrs: "),
        "{e}"
    );
}

#[test]
fn identifiers_are_quoted_and_the_schema_has_the_columns() {
    assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    for c in CDR_COLUMNS.iter().chain(&ACC_COLUMNS) {
        assert!(SCHEMA.contains(&format!("\n    {c} ")), "{c}");
    }
    assert!(crate::acc::pgtls::parse("host=/tmp port=5 user=postgres dbname=x").is_ok());
    assert!(crate::acc::pgtls::parse("host='unterminated").is_err());
}
