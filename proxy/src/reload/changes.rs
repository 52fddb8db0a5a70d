//! What a reload changed, in the file's own words: the dotted keys whose values differ
//! (`timers.t1_ms`), and for a list of named tables (`[[customer]]`, `[[gateway_set]]`) which
//! names came, went or changed.

use toml::{Table, Value};

/// The dotted keys (and named lists) that differ between `old` and `new`, sorted.
pub fn keys(old: &Table, new: &Table) -> Vec<String> {
    let mut out = Vec::new();
    tables("", old, new, &mut out);
    out
}

fn tables(prefix: &str, old: &Table, new: &Table, out: &mut Vec<String>) {
    let mut keys: Vec<&String> = new.keys().chain(old.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let key = format!("{prefix}{k}");
        match (old.get(k), new.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(Value::Table(a)), Some(Value::Table(b))) => {
                tables(&format!("{key}."), a, b, out);
            }
            // A table added or taken out whole: its keys, dotted, as for one that changed.
            (None, Some(Value::Table(b))) => tables(&format!("{key}."), &Table::new(), b, out),
            (Some(Value::Table(a)), None) => tables(&format!("{key}."), a, &Table::new(), out),
            (Some(Value::Array(a)), Some(Value::Array(b))) => match (named(a), named(b)) {
                (Some(a), Some(b)) => out.push(format!("{key} ({})", by_name(&a, &b))),
                _ => out.push(key),
            },
            _ => out.push(key),
        }
    }
}

/// A list of tables each with a `name`, as (name, table) pairs; none otherwise.
fn named(list: &[Value]) -> Option<Vec<(&str, &Value)>> {
    list.iter()
        .map(|v| Some((v.as_table()?.get("name")?.as_str()?, v)))
        .collect()
}

/// The table named `n` in `list`.
fn find<'a>(list: &[(&str, &'a Value)], n: &str) -> Option<&'a Value> {
    list.iter().find(|(m, _)| *m == n).map(|p| p.1)
}

/// `+new, -gone, ~changed`, in the file's order, or `order` when only the order differs.
fn by_name(old: &[(&str, &Value)], new: &[(&str, &Value)]) -> String {
    let mut parts = Vec::new();
    for (n, v) in new {
        match find(old, n) {
            None => parts.push(format!("+{n}")),
            Some(was) if was != *v => parts.push(format!("~{n}")),
            Some(_) => {}
        }
    }
    for (n, _) in old {
        if find(new, n).is_none() {
            parts.push(format!("-{n}"));
        }
    }
    if parts.is_empty() {
        "order".into()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Table {
        s.parse().unwrap()
    }

    /// The keys as the reload's line says them.
    fn between(old: &Table, new: &Table) -> String {
        let changed = keys(old, new);
        if changed.is_empty() {
            "nothing changed".into()
        } else {
            format!("changed: {}", changed.join(", "))
        }
    }

    /// A table written or taken out whole is named by its keys, as CLI.md shows them.
    #[test]
    fn a_table_added_or_removed_whole_names_its_keys() {
        let old = t("[log]\nlevel = \"info\"\n");
        let new = t("[timers]\nt1_ms = 250\ntimer_b_ms = 8000\n");
        assert_eq!(
            between(&old, &new),
            "changed: log.level, timers.t1_ms, timers.timer_b_ms"
        );
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let a = t("[timers]\nt1_ms = 500\n[[customer]]\nname = \"a\"\n");
        assert_eq!(between(&a, &a), "nothing changed");
    }

    #[test]
    fn keys_are_named_by_their_dotted_path_and_lists_by_name() {
        let old = t(r#"
[timers]
t1_ms = 500
t2_ms = 4000
[log]
level = "info"
[[customer]]
name = "a"
sources = ["10.0.0.0/8"]
[[customer]]
name = "c"
sources = ["10.0.0.3/32"]
[[gateway_set]]
name = "trunk"
gateways = ["192.0.2.1:5060"]
"#);
        let new = t(r#"
[timers]
t1_ms = 250
t2_ms = 4000
[[customer]]
name = "b"
sources = ["10.0.0.2/32"]
[[customer]]
name = "c"
sources = ["10.0.0.4/32"]
[[gateway_set]]
name = "trunk"
gateways = ["192.0.2.1:5060"]
"#);
        assert_eq!(
            between(&old, &new),
            "changed: customer (+b, ~c, -a), log.level, timers.t1_ms"
        );
    }

    #[test]
    fn a_list_without_names_or_only_reordered_is_said_as_such() {
        let old = t(
            "[listen]\nsip = [\"127.0.0.1:5060\"]\n[[customer]]\nname = \"a\"\n[[customer]]\nname = \"b\"\n",
        );
        let new = t(
            "[listen]\nsip = [\"127.0.0.2:5060\"]\n[[customer]]\nname = \"b\"\n[[customer]]\nname = \"a\"\n",
        );
        assert_eq!(between(&old, &new), "changed: customer (order), listen.sip");
    }
}
