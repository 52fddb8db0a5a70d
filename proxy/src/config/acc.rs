//! `[acc]` and `[[acc.rule]]`, and the top-level `node`: accounting in Kamailio's terms.
//! Every mistake names its key and line.

use super::{ConfigError, Invalid};
use crate::acc::config::{
    AccConfig, AccRule, DEFAULT_JOURNAL_KIB, DEFAULT_QUEUE, DEFAULT_SPOOL_MAX_MB,
    DEFAULT_SYNC_INTERVAL_MS, DEFAULT_WRITE_INTERVAL_MS, Methods, Sinks, host_name,
};
use crate::acc::files::{Formats, Rotation, SyncMode};
use crate::sip::Method;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// `[acc]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccFile {
    /// Kamailio's `FLT_ACC`: methods whose transactions are recorded when they end with 2xx.
    pub flags: Spanned<Vec<Spanned<String>>>,
    /// `FLT_ACCFAILED`: of those, also when they end with ≥ 300 or without a final reply.
    pub failed_flags: Spanned<Vec<Spanned<String>>>,
    /// `FLT_ACCMISSED`: INVITEs that end without 2xx go to `missed_calls`.
    pub missed_flags: Spanned<Vec<Spanned<String>>>,
    pub cdrs: bool,
    /// Any of `log`, `files`, `postgres`.
    pub sinks: Spanned<Vec<Spanned<String>>>,
    /// Any of `csv`, `jsonl`.
    pub formats: Spanned<Vec<Spanned<String>>>,
    pub dir: Spanned<String>,
    pub sync_interval_ms: Spanned<u64>,
    /// `journal` (one synced journal per commit), `file` (fdatasync each file) or
    /// `filesystem` (one syncfs).
    pub sync: Spanned<String>,
    /// The commit journal's size with `sync = "journal"`.
    pub journal_kib: Spanned<u64>,
    /// With the journal, how long the record files may lag behind it.
    pub write_interval_ms: Spanned<u64>,
    pub rotate_bytes: u64,
    pub rotate_interval_s: Spanned<u64>,
    pub queue: Spanned<usize>,
    pub postgres: Option<Spanned<String>>,
    pub spool_max_mb: Spanned<u64>,
    pub rule: Vec<AccRuleFile>,
}

impl Default for AccFile {
    fn default() -> Self {
        let list = |v: &[&str]| {
            Spanned::new(
                0..0,
                v.iter().map(|s| Spanned::new(0..0, (*s).into())).collect(),
            )
        };
        AccFile {
            flags: list(&[]),
            failed_flags: list(&[]),
            missed_flags: list(&[]),
            cdrs: false,
            sinks: list(&["files"]),
            formats: list(&["csv", "jsonl"]),
            dir: Spanned::new(0..0, "acc".into()),
            sync_interval_ms: Spanned::new(0..0, DEFAULT_SYNC_INTERVAL_MS),
            sync: Spanned::new(0..0, "journal".into()),
            journal_kib: Spanned::new(0..0, DEFAULT_JOURNAL_KIB),
            write_interval_ms: Spanned::new(0..0, DEFAULT_WRITE_INTERVAL_MS),
            rotate_bytes: 0,
            rotate_interval_s: Spanned::new(0..0, 0),
            queue: Spanned::new(0..0, DEFAULT_QUEUE),
            postgres: None,
            spool_max_mb: Spanned::new(0..0, DEFAULT_SPOOL_MAX_MB),
            rule: Vec::new(),
        }
    }
}

/// `[[acc.rule]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccRuleFile {
    pub method: Spanned<String>,
    pub comment: Spanned<String>,
    /// Default `acc`.
    pub table: Option<Spanned<String>>,
    pub account: Option<String>,
    pub prefix: Option<String>,
}

fn method(s: &Spanned<String>, key: &str, invalid: Invalid<'_>) -> Result<Method, ConfigError> {
    let name = s.get_ref().trim().to_ascii_uppercase();
    match Method::parse(name.as_bytes()) {
        Method::Other => Err(invalid(
            s.span(),
            key,
            format!(
                "`{}` is not a SIP method siplb knows (INVITE, ACK, BYE, CANCEL, OPTIONS, \
                 REGISTER, PRACK, UPDATE, INFO, REFER, MESSAGE, SUBSCRIBE, NOTIFY, PUBLISH)",
                s.get_ref()
            ),
        )),
        m => Ok(m),
    }
}

fn methods(
    list: &Spanned<Vec<Spanned<String>>>,
    key: &str,
    invalid: Invalid<'_>,
) -> Result<Methods, ConfigError> {
    let mut set = Methods::default();
    for m in list.get_ref() {
        set.insert(method(m, key, invalid)?);
    }
    Ok(set)
}

/// A table name that is a file name and a PostgreSQL identifier as it is.
fn table_name(s: &Spanned<String>, invalid: Invalid<'_>) -> Result<String, ConfigError> {
    let t = s.get_ref();
    let ok = !t.is_empty()
        && t.len() <= 63
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok || t == "cdrs" {
        return Err(invalid(
            s.span(),
            "acc.rule.table",
            format!(
                "`{t}` is not a table for transaction records: lower-case letters, digits and \
                 `_`, not starting with a digit, at most 63 (`cdrs` holds CDRs only)"
            ),
        ));
    }
    Ok(t.clone())
}

/// The resolved `[acc]` (none when the table is absent); `node` is the top-level key and
/// `resolve` makes paths relative to the config's folder.
pub(super) fn acc(
    f: Option<&AccFile>,
    node: Option<&Spanned<String>>,
    resolve: &dyn Fn(&str) -> PathBuf,
    invalid: Invalid<'_>,
) -> Result<(String, Option<AccConfig>), ConfigError> {
    let node = match node {
        None => host_name(),
        Some(n) => {
            let t = n.get_ref().trim();
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
            {
                return Err(invalid(
                    n.span(),
                    "node",
                    format!(
                        "`{}` is not a node name: printable ASCII characters (it goes into \
                         every record's id and the fleet's Redis keys), no spaces, commas or \
                         quotes",
                        n.get_ref()
                    ),
                ));
            }
            t.to_string()
        }
    };
    let Some(f) = f else {
        return Ok((node, None));
    };
    let dir = f.dir.get_ref();
    if dir.trim().is_empty() || dir.contains('\0') {
        return Err(invalid(
            f.dir.span(),
            "acc.dir",
            format!(
                "{dir:?} is not a folder name{}",
                if dir.contains('\0') {
                    " (a NUL byte)"
                } else {
                    ""
                }
            ),
        ));
    }
    let flags = methods(&f.flags, "acc.flags", invalid)?;
    let failed_flags = methods(&f.failed_flags, "acc.failed_flags", invalid)?;
    let missed_flags = methods(&f.missed_flags, "acc.missed_flags", invalid)?;
    for m in f.flags.get_ref() {
        let why = match method(m, "acc.flags", invalid)? {
            Method::Ack => {
                "an ACK has no transaction of its own to complete (Kamailio's report_ack)"
            }
            Method::Cancel => {
                "siplb answers a CANCEL itself and cancels the INVITE (Kamailio's report_cancels)"
            }
            _ => continue,
        };
        return Err(invalid(
            m.span(),
            "acc.flags",
            format!(
                "`{}` cannot be recorded by flag: {why}; an [[acc.rule]] records it on receipt",
                m.get_ref()
            ),
        ));
    }
    for m in f.failed_flags.get_ref() {
        if !flags.contains(method(m, "acc.failed_flags", invalid)?) {
            return Err(invalid(
                m.span(),
                "acc.failed_flags",
                format!(
                    "`{}` is not in acc.flags: the failed flag only widens the flag (Kamailio's \
                     FLT_ACCFAILED goes with FLT_ACC)",
                    m.get_ref()
                ),
            ));
        }
    }
    for m in f.missed_flags.get_ref() {
        if method(m, "acc.missed_flags", invalid)? != Method::Invite {
            return Err(invalid(
                m.span(),
                "acc.missed_flags",
                format!("`{}`: missed calls are INVITEs only", m.get_ref()),
            ));
        }
    }
    let mut rules = Vec::new();
    for r in &f.rule {
        let m = method(&r.method, "acc.rule.method", invalid)?;
        if flags.contains(m) {
            return Err(invalid(
                r.method.span(),
                "acc.rule.method",
                format!(
                    "{} is recorded by acc.flags already: a rule replaces the flag for its \
                     method, configure one or the other",
                    m.as_str()
                ),
            ));
        }
        if r.comment.get_ref().is_empty() {
            return Err(invalid(
                r.comment.span(),
                "acc.rule.comment",
                "must not be empty (e.g. \"210 Bye received\")".into(),
            ));
        }
        let table = match &r.table {
            Some(t) => table_name(t, invalid)?,
            None => "acc".into(),
        };
        rules.push(AccRule {
            method: m,
            comment: r.comment.get_ref().clone(),
            table,
            account: r.account.clone(),
            prefix: r.prefix.clone(),
        });
    }
    let mut sinks = Sinks::default();
    let mut postgres_sink = false;
    for s in f.sinks.get_ref() {
        match s.get_ref().as_str() {
            "log" => sinks.log = true,
            "files" => sinks.files = true,
            "postgres" => postgres_sink = true,
            other => {
                return Err(invalid(
                    s.span(),
                    "acc.sinks",
                    format!("`{other}` is not one of log, files, postgres"),
                ));
            }
        }
    }
    match (&f.postgres, postgres_sink) {
        (Some(p), _) => {
            crate::acc::pgtls::parse(p.get_ref())
                .map_err(|e| invalid(p.span(), "acc.postgres", e))?;
            sinks.postgres = Some(p.get_ref().clone());
        }
        (None, true) => {
            return Err(invalid(
                f.sinks.span(),
                "acc.sinks",
                "`postgres` needs acc.postgres, the libpq connection string".into(),
            ));
        }
        (None, false) => {}
    }
    let mut formats = Formats {
        csv: false,
        jsonl: false,
    };
    for s in f.formats.get_ref() {
        match s.get_ref().as_str() {
            "csv" => formats.csv = true,
            "jsonl" => formats.jsonl = true,
            other => {
                return Err(invalid(
                    s.span(),
                    "acc.formats",
                    format!("`{other}` is not one of csv, jsonl"),
                ));
            }
        }
    }
    if sinks.files && !formats.csv && !formats.jsonl {
        return Err(invalid(
            f.formats.span(),
            "acc.formats",
            "the files sink needs at least one format (csv, jsonl)".into(),
        ));
    }
    let sync = *f.sync_interval_ms.get_ref();
    if sync == 0 || sync > 60_000 {
        return Err(invalid(
            f.sync_interval_ms.span(),
            "acc.sync_interval_ms",
            "must be from 1 to 60000".into(),
        ));
    }
    let sync_mode = match f.sync.get_ref().as_str() {
        "journal" => SyncMode::Journal,
        "file" => SyncMode::File,
        "filesystem" => SyncMode::Filesystem,
        other => {
            return Err(invalid(
                f.sync.span(),
                "acc.sync",
                format!("`{other}` is not one of journal, file, filesystem"),
            ));
        }
    };
    let journal_kib = *f.journal_kib.get_ref();
    if !(4..=4 << 20).contains(&journal_kib) {
        return Err(invalid(
            f.journal_kib.span(),
            "acc.journal_kib",
            "must be from 4 to 4194304 (4 GiB)".into(),
        ));
    }
    let write_interval = *f.write_interval_ms.get_ref();
    if write_interval > 60_000 {
        return Err(invalid(
            f.write_interval_ms.span(),
            "acc.write_interval_ms",
            "must be from 0 to 60000".into(),
        ));
    }
    if *f.queue.get_ref() < 2 {
        return Err(invalid(
            f.queue.span(),
            "acc.queue",
            "must be at least 2".into(),
        ));
    }
    if *f.spool_max_mb.get_ref() == 0 {
        return Err(invalid(
            f.spool_max_mb.span(),
            "acc.spool_max_mb",
            "must be at least 1".into(),
        ));
    }
    Ok((
        node.clone(),
        Some(AccConfig {
            node,
            flags,
            failed_flags,
            missed_flags,
            rules,
            cdrs: f.cdrs,
            sinks,
            dir: resolve(f.dir.get_ref()),
            formats,
            sync_interval: Duration::from_millis(sync),
            sync_mode,
            journal_bytes: journal_kib << 10,
            write_interval: Duration::from_millis(write_interval),
            rotation: Rotation {
                max_bytes: f.rotate_bytes,
                max_age_s: *f.rotate_interval_s.get_ref(),
            },
            queue: *f.queue.get_ref(),
            spool_max_bytes: f.spool_max_mb.get_ref().saturating_mul(1 << 20),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const MIN: &str = r#"
[listen]
sip = ["127.0.0.1:5060"]

[[customer]]
name = "local"
sources = ["127.0.0.1/32"]

[[gateway_set]]
name = "trunk"
gateways = ["127.0.0.1:5081"]

[acc]
sinks = ["files", "postgres"]
"#;

    #[test]
    fn a_postgres_connection_string_that_does_not_parse_names_acc_postgres() {
        let parse = |conn: &str| {
            let src = format!("{MIN}postgres = \"{conn}\"\n");
            Config::parse(Path::new("/etc/siplb/t.toml"), &src)
        };
        let c = parse("host=/run/postgresql dbname=siplb").unwrap();
        assert_eq!(
            c.acc.unwrap().sinks.postgres.as_deref(),
            Some("host=/run/postgresql dbname=siplb")
        );
        let e = parse("host='unterminated").unwrap_err().to_string();
        assert!(e.contains("`acc.postgres`"), "{e}");
        // TLS as libpq has it; what cannot be done says so at once, with its line.
        assert!(parse("host=db.example sslmode=require").is_ok());
        assert!(parse("postgresql://siplb@db.example/siplb?sslmode=disable").is_ok());
        let e = parse("host=db.example sslmode=verify-full sslrootcert=/nonexistent/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`acc.postgres`") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        assert!(e.contains("t.toml:15:"), "{e}");
        // A keyword libpq does not know is named, with the one meant.
        let e = parse("host=db.example dbnme=siplb")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml:15:") && e.contains("`dbnme` is not a libpq keyword (`dbname`?)"),
            "{e}"
        );
    }

    #[test]
    fn the_journal_is_the_default_commit_and_its_size_is_checked() {
        let parse = |extra: &str| {
            let src = MIN.replace(r#"["files", "postgres"]"#, r#"["files"]"#) + extra;
            Config::parse(Path::new("/etc/siplb/t.toml"), &src)
        };
        let c = parse("").unwrap().acc.unwrap();
        assert_eq!(c.sync_mode, crate::acc::files::SyncMode::Journal);
        assert_eq!(c.journal_bytes, 16 << 20);
        let c = parse("sync = \"file\"\njournal_kib = 64\n")
            .unwrap()
            .acc
            .unwrap();
        assert_eq!(c.sync_mode, crate::acc::files::SyncMode::File);
        assert_eq!(c.journal_bytes, 64 << 10);
        let e = parse("journal_kib = 1\n").unwrap_err().to_string();
        assert!(
            e.contains("`acc.journal_kib`") && e.contains("t.toml:"),
            "{e}"
        );
        let e = parse("sync = \"never\"\n").unwrap_err().to_string();
        assert!(e.contains("`acc.sync`") && e.contains("journal"), "{e}");
    }
}
