//! A checker of the Prometheus text format (0.0.4), line by line, independent of the code
//! that writes it. Used by `tests/metrics.rs` on the real binary's `/metrics` and by the unit
//! tests of `proxy/src/metrics/prometheus.rs` (included there with `#[path]`).

#![allow(dead_code)] // each user takes what it needs

use std::collections::{HashMap, HashSet};

/// One sample: its name, its labels in order, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a valid exposition holds.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → (type, help).
    pub families: HashMap<String, (String, String)>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The samples named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The value of the one sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.named(name)
            .find(|s| {
                s.labels.len() == labels.len() && labels.iter().all(|(n, v)| s.label(n) == Some(*v))
            })
            .map(|s| s.value)
    }
}

pub fn is_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

pub fn is_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with("__")
}

/// `{a="x",b="y"}` (without the braces) → labels; escapes `\\`, `\"`, `\n` only.
fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\"…\": {rest}"))?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value: {after}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in label value: {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        labels.push((name.to_string(), value));
        rest = &after[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.is_empty() {
            return Err(format!("junk after a label value: {rest}"));
        }
    }
    Ok(labels)
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        v => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// The family a sample belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_sum", "_count", "_bucket"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(kind) = types.get(base)
        {
            let ok = match suffix {
                "_bucket" => kind == "histogram",
                _ => kind == "summary" || kind == "histogram",
            };
            if ok {
                return Some(base);
            }
        }
    }
    None
}

/// Parses and checks the whole text: every line a `# HELP`, a `# TYPE` or a sample; names
/// `[a-zA-Z_:][a-zA-Z0-9_:]*`; HELP and TYPE once per family, before its samples; every
/// sample's family has both, its samples together; counters end in `_total`; a summary's
/// plain samples have a `quantile`, a histogram's buckets an `le`; no series twice.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut seen_samples: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    if !text.ends_with('\n') {
        return Err("the text does not end with a line feed".into());
    }
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        // A new family (a HELP, TYPE or sample of another name) finishes the current one.
        let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(family) {
                if finished.contains(family) {
                    return Err(format!("family {family} is not in one group"));
                }
                if let Some(c) = current.take() {
                    finished.insert(c);
                }
                *current = Some(family.to_string());
            }
            Ok(())
        };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            if !is_metric_name(name) {
                return Err(at(format!("bad name {name:?}")));
            }
            if help.trim().is_empty() {
                return Err(at("empty HELP".into()));
            }
            if seen_samples.contains(name) {
                return Err(at("HELP after the family's samples".into()));
            }
            enter(name, &mut current).map_err(at)?;
            if helps.insert(name.into(), help.into()).is_some() {
                return Err(at("second HELP".into()));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type".into()))?;
            if !is_metric_name(name) {
                return Err(at(format!("bad name {name:?}")));
            }
            if !["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind) {
                return Err(at(format!("bad type {kind:?}")));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("a counter's name does not end in _total".into()));
            }
            if seen_samples.contains(name) {
                return Err(at("TYPE after the family's samples".into()));
            }
            enter(name, &mut current).map_err(at)?;
            if types.insert(name.into(), kind.into()).is_some() {
                return Err(at("second TYPE".into()));
            }
        } else if line.starts_with('#') {
            // A comment: allowed by the format, written by nobody here.
            return Err(at("a comment that is neither HELP nor TYPE".into()));
        } else {
            let (head, value) = line.rsplit_once(' ').ok_or_else(|| at("no value".into()))?;
            let value = parse_value(value).map_err(at)?;
            let (name, labels) = match head.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels
                        .strip_suffix('}')
                        .ok_or_else(|| at("labels not closed".into()))?;
                    (name, parse_labels(labels).map_err(at)?)
                }
                None => (head, Vec::new()),
            };
            if !is_metric_name(name) {
                return Err(at(format!("bad name {name:?}")));
            }
            let family = family_of(name, &types).ok_or_else(|| at("no TYPE for it".into()))?;
            if !helps.contains_key(family) {
                return Err(at("no HELP for it".into()));
            }
            enter(family, &mut current).map_err(at)?;
            let kind = types[family].as_str();
            match kind {
                "summary" if name == family => {
                    let q = labels
                        .iter()
                        .find(|(n, _)| n == "quantile")
                        .ok_or_else(|| at("summary sample without quantile".into()))?;
                    let q: f64 = q.1.parse().map_err(|_| at("bad quantile".into()))?;
                    if !(0.0..=1.0).contains(&q) {
                        return Err(at("quantile out of [0, 1]".into()));
                    }
                }
                "histogram"
                    if name.ends_with("_bucket") && !labels.iter().any(|(n, _)| n == "le") =>
                {
                    return Err(at("bucket without le".into()));
                }
                "counter" | "summary" | "histogram" if value < 0.0 => {
                    return Err(at("negative count".into()));
                }
                _ => {}
            }
            let mut key = labels.clone();
            key.sort();
            if !series.insert(format!("{name}{key:?}")) {
                return Err(at("series twice".into()));
            }
            seen_samples.insert(family.to_string());
            exp.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    if let Some(name) = types.keys().find(|n| !helps.contains_key(*n)) {
        return Err(format!("family {name} has a TYPE and no HELP"));
    }
    if let Some(name) = helps.keys().find(|n| !types.contains_key(*n)) {
        return Err(format!("family {name} has a HELP and no TYPE"));
    }
    exp.families = types
        .into_iter()
        .map(|(n, k)| {
            let h = helps[&n].clone();
            (n, (k, h))
        })
        .collect();
    Ok(exp)
}
