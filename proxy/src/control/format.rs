//! Output of the control verbs: kamcmd's brace format, or JSON (`siplb ctl --json`).

use serde_json::Value;
use std::fmt::Write;

/// What a verb answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `group:name = value` lines (`stats.get_statistics`); JSON: one object.
    Statistics(Vec<(String, u64)>),
    /// One value printed alone (`dlg.profile_get_size`).
    Scalar(Value),
    /// One structure (`dlg.stats_active`).
    Struct(Value),
    /// Structures one after another (`dlg.list`); JSON: an array.
    Structs(Vec<Value>),
    /// Lines of text (`blocklist list`); JSON: an array of strings.
    Lines(Vec<String>),
    /// Nothing (`dlg.end_dlg`); JSON: `{}`.
    Empty,
    /// A text form and a JSON form of their own: `text` in kamcmd's format, `json` as it is
    /// (`dlg.list`: the profiles as objects in JSON, as lines in the text).
    Both { text: Box<Reply>, json: Value },
}

impl Reply {
    pub fn render(&self, json: bool) -> String {
        if json {
            let v = match self {
                Reply::Statistics(s) => Value::Object(
                    s.iter()
                        .map(|(k, v)| (k.clone(), Value::from(*v)))
                        .collect(),
                ),
                Reply::Scalar(v) | Reply::Struct(v) => v.clone(),
                Reply::Structs(v) => Value::Array(v.clone()),
                Reply::Lines(l) => {
                    Value::Array(l.iter().map(|s| Value::from(s.as_str())).collect())
                }
                Reply::Empty => Value::Object(Default::default()),
                Reply::Both { json, .. } => json.clone(),
            };
            return format!("{v}\n");
        }
        let mut out = String::new();
        match self {
            Reply::Statistics(s) => {
                for (k, v) in s {
                    let _ = writeln!(out, "{k} = {v}");
                }
            }
            Reply::Scalar(v) => {
                scalar(v, &mut out);
                out.push('\n');
            }
            Reply::Struct(v) => {
                brace(v, 0, &mut out);
                out.push('\n');
            }
            Reply::Structs(vs) => {
                for v in vs {
                    brace(v, 0, &mut out);
                    out.push('\n');
                }
            }
            Reply::Lines(l) => {
                for line in l {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Reply::Empty => {}
            Reply::Both { text, .. } => return text.render(false),
        }
        out
    }
}

fn scalar(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// kamcmd's structure: `{`, one `key: value` per line indented by tabs, nested structures
/// the same one level deeper, `}`. Array entries are printed bare, one per line.
fn brace(v: &Value, depth: usize, out: &mut String) {
    let tabs = |n: usize, out: &mut String| out.extend(std::iter::repeat_n('\t', n));
    match v {
        Value::Object(m) => {
            out.push_str("{\n");
            for (k, v) in m {
                tabs(depth + 1, out);
                out.push_str(k);
                out.push(':');
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        out.push(' ');
                        brace(v, depth + 1, out);
                    }
                    Value::String(s) if s.is_empty() => {}
                    _ => {
                        out.push(' ');
                        scalar(v, out);
                    }
                }
                out.push('\n');
            }
            tabs(depth, out);
            out.push('}');
        }
        Value::Array(items) => {
            out.push_str("{\n");
            for item in items {
                tabs(depth + 1, out);
                match item {
                    Value::Object(_) | Value::Array(_) => brace(item, depth + 1, out),
                    _ => scalar(item, out),
                }
                out.push('\n');
            }
            tabs(depth, out);
            out.push('}');
        }
        _ => scalar(v, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kamcmd_brace_format() {
        let v = json!({
            "h_entry": 3702,
            "call-id": "ef6f",
            "caller": {"tag": "fa86", "route_set": ""},
            "profiles": ["total", "account: alice"],
            "variables": {},
        });
        assert_eq!(
            Reply::Struct(v.clone()).render(false),
            "{\n\th_entry: 3702\n\tcall-id: ef6f\n\tcaller: {\n\t\ttag: fa86\n\t\troute_set:\n\t}\n\tprofiles: {\n\t\ttotal\n\t\taccount: alice\n\t}\n\tvariables: {\n\t}\n}\n"
        );
        assert_eq!(Reply::Struct(v.clone()).render(true), format!("{v}\n"));
        assert_eq!(Reply::Scalar(json!(5)).render(false), "5\n");
        assert_eq!(
            Reply::Statistics(vec![("dialog:active_dialogs".into(), 3)]).render(false),
            "dialog:active_dialogs = 3\n"
        );
        assert_eq!(
            Reply::Statistics(vec![("core:hand_offs".into(), 0)]).render(true),
            "{\"core:hand_offs\":0}\n"
        );
        assert_eq!(Reply::Empty.render(false), "");
        let both = Reply::Both {
            text: Box::new(Reply::Lines(vec!["a b".into()])),
            json: json!({"a": "b"}),
        };
        assert_eq!(both.render(false), "a b\n");
        assert_eq!(both.render(true), "{\"a\":\"b\"}\n");
    }
}
