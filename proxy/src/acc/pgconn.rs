//! libpq's connection string, read as libpq reads it: the key-value and URL grammars, every
//! keyword libpq knows (an unknown one is an error naming it), a `service` from the
//! connection service files, and a password from a password file. What tokio-postgres
//! takes is handed to it as written; the keywords it lacks are taken out here, for
//! [`super::pgtls`] to apply.
//!
//! Unlike libpq, siplb reads no `PG*` environment variable for a keyword left out, but for
//! the files' locations (`PGSERVICEFILE`, `PGSYSCONFDIR`, `PGPASSFILE`) and `HOME`.

use std::path::{Path, PathBuf};

/// Keywords tokio-postgres reads itself, left in the string.
const PASSED: [&str; 18] = [
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    // tokio-postgres's name for libpq's `keepalives_count`.
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// The values tokio-postgres takes for those of [`PASSED`] that have a few, as said in the
/// error of one it does not.
pub const VALUES: [(&str, &str); 5] = [
    ("target_session_attrs", "any, read-write"),
    ("channel_binding", "disable, prefer, require"),
    ("load_balance_hosts", "disable, random"),
    ("sslnegotiation", "postgres, direct"),
    (
        "sslmode",
        "disable, allow, prefer, require, verify-ca, verify-full",
    ),
];

/// Keywords taken out of the string, for siplb to apply.
const TAKEN: [&str; 26] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcertmode",
    "sslpassword",
    "sslcompression",
    "requiressl",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "passfile",
    "service",
    "servicefile",
    "client_encoding",
    "fallback_application_name",
    "keepalives_count",
    "replication",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "min_protocol_version",
    "max_protocol_version",
];

/// libpq keywords siplb cannot honour, and what to do instead.
const UNSUPPORTED: [(&str, &str); 9] = [
    (
        "require_auth",
        "siplb cannot limit the server's authentication methods; limit them in its \
         pg_hba.conf, or give channel_binding=require for SCRAM with channel binding",
    ),
    (
        "requirepeer",
        "siplb does not check the user of the server's process; protect the socket folder",
    ),
    ("sslkeylogfile", "siplb writes no TLS key log"),
    ("oauth_issuer", "siplb has no OAuth authentication"),
    ("oauth_client_id", "siplb has no OAuth authentication"),
    ("oauth_client_secret", "siplb has no OAuth authentication"),
    ("oauth_scope", "siplb has no OAuth authentication"),
    ("scram_client_key", "give the password"),
    ("scram_server_key", "give the password"),
];

/// A connection string taken apart: what tokio-postgres reads (as written), and the pairs
/// taken out ([`TAKEN`]), a service's merged in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConnString {
    pub rest: String,
    pub taken: Vec<(String, String)>,
}

impl ConnString {
    /// The value of a taken keyword (an empty one is its default, as with libpq).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.taken
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// Where the service files are: `PGSERVICEFILE` (else `~/.pg_service.conf`), then the
/// system's, in `PGSYSCONFDIR` (else Debian's `/etc/postgresql-common`).
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub home: Option<PathBuf>,
    pub service_file: Option<PathBuf>,
    pub sysconf_dir: Option<PathBuf>,
    pub pass_file: Option<PathBuf>,
}

impl Env {
    pub fn of_process() -> Env {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            home: var("HOME"),
            service_file: var("PGSERVICEFILE"),
            sysconf_dir: var("PGSYSCONFDIR"),
            pass_file: var("PGPASSFILE"),
        }
    }
}

/// Reads `conn`: every keyword known, the taken ones out, a `service` merged in (the
/// string's own keywords win over the service's).
pub fn read(conn: &str, env: &Env) -> Result<ConnString, String> {
    let trimmed = conn.trim_start();
    let url = ["postgres://", "postgresql://"]
        .iter()
        .any(|p| trimmed.starts_with(p));
    let (mut rest, pairs, mut present) = if url {
        split_url(trimmed)?
    } else {
        split_key_values(conn)?
    };
    for k in &present {
        known(k)?;
    }
    // libpq's older spelling of sslmode is that sslmode where it is written.
    if present.iter().any(|k| k == "requiressl") {
        present.push("sslmode".into());
    }
    let mut taken = pairs;
    let service = taken
        .iter()
        .rev()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty());
    if let Some(name) = service {
        let file = taken
            .iter()
            .rev()
            .find(|(k, _)| k == "servicefile")
            .map(|(_, v)| PathBuf::from(v))
            .filter(|p| !p.as_os_str().is_empty());
        let url_host = url && present.iter().any(|k| k == "host");
        for (k, v) in service_pairs(&name, file.as_deref(), env)? {
            let as_mode = if k == "requiressl" {
                "sslmode"
            } else {
                k.as_str()
            };
            if url_host && k == "port" && !present.iter().any(|p| p == "port") {
                return Err(format!(
                    "the URL names a host without a port, and service `{name}` gives \
                     port={v}: write the port in the URL (a host written without one is on \
                     5432)"
                ));
            }
            if present.contains(&k) || present.iter().any(|p| p == as_mode) {
                continue;
            }
            present.push(k.clone());
            if TAKEN.contains(&k.as_str()) {
                taken.push((k, v));
            } else if url {
                // A query parameter holds one host (or port): a list is one each.
                let values: Vec<&str> = if matches!(k.as_str(), "host" | "hostaddr" | "port") {
                    v.split(',').collect()
                } else {
                    vec![v.as_str()]
                };
                for v in values {
                    rest.push(if rest.contains('?') { '&' } else { '?' });
                    rest.push_str(&percent_encode(&k));
                    rest.push('=');
                    rest.push_str(&percent_encode(v));
                }
            } else {
                let quoted = v.replace('\\', "\\\\").replace('\'', "\\'");
                rest = format!("{k}='{quoted}' {rest}");
            }
        }
    }
    for (k, v) in &mut taken {
        if k == "requiressl" {
            // As libpq reads it: `1…` is require, anything else prefer.
            let mode = if v.starts_with('1') {
                "require"
            } else {
                "prefer"
            };
            *k = "sslmode".into();
            *v = mode.into();
        }
    }
    Ok(ConnString { rest, taken })
}

/// Applies the keywords taken out of `cs` that are not TLS's to `pg`: a password from a
/// password file when the string has none, `fallback_application_name`, `keepalives_count`;
/// and checks those siplb can only take at their defaults. `krbsrvname`, `gsslib` and
/// `gssdelegation` are for GSSAPI, which siplb has not: they change nothing.
pub fn apply(pg: &mut tokio_postgres::Config, cs: &ConnString, env: &Env) -> Result<(), String> {
    if let Some(v) = cs.get("client_encoding")
        && !matches!(
            v.to_ascii_uppercase().as_str(),
            "UTF8" | "UTF-8" | "UNICODE" | "AUTO"
        )
    {
        return Err(format!(
            "client_encoding={v}: siplb speaks UTF8 only (its records are UTF-8)"
        ));
    }
    if let Some(v) = cs.get("fallback_application_name")
        && pg.get_application_name().is_none()
    {
        pg.application_name(v);
    }
    if let Some(v) = cs.get("keepalives_count") {
        let n = v
            .parse::<u32>()
            .map_err(|_| format!("keepalives_count={v}: not a number"))?;
        pg.keepalives_retries(n);
    }
    if let Some(v) = cs.get("replication")
        && !matches!(v, "0" | "false" | "off" | "no")
    {
        return Err(format!(
            "replication={v}: a replication connection cannot take records; leave it out"
        ));
    }
    match cs.get("gssencmode") {
        None | Some("disable" | "allow" | "prefer") => {}
        Some("require") => {
            return Err(
                "gssencmode=require: siplb has no GSSAPI encryption; use TLS \
                        (sslmode=verify-full)"
                    .into(),
            );
        }
        Some(other) => {
            return Err(format!(
                "gssencmode={other}: not one of disable, allow, prefer, require"
            ));
        }
    }
    if let Some(v) = cs.get("min_protocol_version")
        && v != "3.0"
    {
        return Err(format!(
            "min_protocol_version={v}: siplb speaks protocol 3.0"
        ));
    }
    if let Some(v) = cs.get("max_protocol_version")
        && !matches!(v, "3.0" | "3.2" | "latest")
    {
        return Err(format!(
            "max_protocol_version={v}: not one of 3.0, 3.2, latest"
        ));
    }
    if pg.get_target_session_attrs() == tokio_postgres::config::TargetSessionAttrs::ReadOnly {
        return Err(
            "target_session_attrs=read-only: records are written; any or read-write".into(),
        );
    }
    if pg.get_password().is_none()
        && let Some(user) = pg.get_user().map(str::to_string)
    {
        use tokio_postgres::config::Host;
        let host = match (pg.get_hosts().first(), pg.get_hostaddrs().first()) {
            (Some(Host::Tcp(h)), _) => h.clone(),
            (Some(Host::Unix(p)), _) => p.display().to_string(),
            (None, Some(a)) => a.to_string(),
            (None, None) => "localhost".to_string(),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let dbname = pg.get_dbname().unwrap_or(&user).to_string();
        let named = cs.get("passfile").map(Path::new);
        if let Some(p) = password_from_file(named, env, &host, port, &dbname, &user)? {
            pg.password(p);
        }
    }
    Ok(())
}

/// Whether `key` is a keyword siplb reads; else an error naming it (and the keyword meant,
/// when it is a near miss).
fn known(key: &str) -> Result<(), String> {
    if PASSED.contains(&key) || TAKEN.contains(&key) {
        return Ok(());
    }
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        return Err(format!("`{key}` is not supported: {why}"));
    }
    let all = PASSED
        .iter()
        .chain(TAKEN.iter())
        .chain(UNSUPPORTED.iter().map(|(k, _)| k));
    let lower = key.to_ascii_lowercase();
    let near = all
        .map(|k| (distance(&lower, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min();
    Err(match near {
        Some((_, k)) => format!("`{key}` is not a libpq keyword (`{k}`?)"),
        None => format!("`{key}` is not a libpq keyword"),
    })
}

/// Edit distance between two short ASCII words.
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The pairs of service `name`: from the user's service file, else the system's.
fn service_pairs(
    name: &str,
    file: Option<&Path>,
    env: &Env,
) -> Result<Vec<(String, String)>, String> {
    let user_file = file
        .map(Path::to_path_buf)
        .or_else(|| env.service_file.clone())
        .or_else(|| env.home.as_ref().map(|h| h.join(".pg_service.conf")));
    let system_file = env
        .sysconf_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/postgresql-common"))
        .join("pg_service.conf");
    let mut looked = Vec::new();
    for (i, path) in user_file.into_iter().chain([system_file]).enumerate() {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // Only `servicefile` must be there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && (file.is_none() || i > 0) => {
                looked.push(path.display().to_string());
                continue;
            }
            Err(e) => return Err(format!("service file {}: {e}", path.display())),
        };
        if let Some(pairs) = service_in(&text, name, &path)? {
            return Ok(pairs);
        }
        looked.push(path.display().to_string());
    }
    Err(format!(
        "service `{name}` is not defined in {}",
        looked.join(" or ")
    ))
}

/// The pairs of section `[name]` of a service file's `text`, if it has one.
fn service_in(
    text: &str,
    name: &str,
    path: &Path,
) -> Result<Option<Vec<(String, String)>>, String> {
    let mut found: Option<Vec<(String, String)>> = None;
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{} line {}", path.display(), n + 1);
        if let Some(section) = line.strip_prefix('[') {
            let section = section
                .strip_suffix(']')
                .ok_or_else(|| format!("{}: `[` without `]`", at()))?;
            if found.is_some() {
                // The section is over: the first one of the name is libpq's.
                break;
            }
            inside = section == name;
            if inside {
                found = Some(Vec::new());
            }
            continue;
        }
        if !inside {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("{}: not `keyword=value`", at()))?;
        let (k, v) = (k.trim(), v.trim());
        if k == "service" {
            return Err(format!("{}: a service inside a service", at()));
        }
        known(k).map_err(|e| format!("{}: {e}", at()))?;
        if let Some(pairs) = found.as_mut() {
            pairs.push((k.to_string(), v.to_string()));
        }
    }
    Ok(found)
}

/// The password for a connection from a password file (`passfile`, else `PGPASSFILE`, else
/// `~/.pgpass`): the first line whose host, port, database and user match (`*` matches
/// anything; `\` escapes `:` and `\`). A file others may read is refused, as libpq ignores
/// it; one named by `passfile` or `PGPASSFILE` that is missing is an error.
pub fn password_from_file(
    named: Option<&Path>,
    env: &Env,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Result<Option<String>, String> {
    let named = named
        .map(Path::to_path_buf)
        .or_else(|| env.pass_file.clone());
    let path = match (&named, &env.home) {
        (Some(p), _) => p.clone(),
        (None, Some(h)) => h.join(".pgpass"),
        (None, None) => return Ok(None),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && named.is_none() => {
            return Ok(None);
        }
        Err(e) => return Err(format!("passfile {}: {e}", path.display())),
    };
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "passfile {}: others may read it (mode {:o}); libpq ignores such a file: \
                 chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("passfile {}: {e}", path.display()))?;
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = pgpass_fields(line);
        if fields.len() < 5 {
            // libpq skips a line of fewer fields.
            continue;
        }
        // The default socket folder is `localhost` too (libpq's, Debian's build).
        let socket = matches!(
            host.trim_end_matches('/'),
            "/var/run/postgresql" | "/run/postgresql"
        ) && fields[0] == "localhost";
        let matches = fields[..4]
            .iter()
            .zip(wanted)
            .enumerate()
            .all(|(i, (f, w))| f == "*" || f == w || (i == 0 && socket));
        if matches {
            return Ok(Some(fields[4].clone()));
        }
    }
    Ok(None)
}

/// A password file's line split at its unescaped `:`s, the escapes undone.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut cs = line.chars();
    while let Some(c) = cs.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (cs.next(), out.last_mut()) {
                    f.push(n);
                }
            }
            ':' => out.push(String::new()),
            c => {
                if let Some(f) = out.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    out
}

/// A string taken apart: the rest as written, the pairs taken out, and every keyword given.
type Split = (String, Vec<(String, String)>, Vec<String>);

/// `key = value` pairs, a value either bare (up to white space) or in single quotes, with
/// `\` escaping the next character (the grammar of libpq and tokio-postgres). The [`TAKEN`]
/// pairs are cut out; the others stay as they were written. Also every key seen.
fn split_key_values(s: &str) -> Result<Split, String> {
    // By character, white space as tokio-postgres has it (`char::is_whitespace`).
    let cs: Vec<(usize, char)> = s.char_indices().collect();
    let at = |j: usize| cs.get(j).map_or(s.len(), |&(i, _)| i);
    let ch = |j: usize| cs.get(j).map(|&(_, c)| c);
    let mut j = 0;
    let mut rest = String::new();
    let mut kept_from = 0;
    let mut taken = Vec::new();
    let mut present = Vec::new();
    let ws = |j: &mut usize| {
        while ch(*j).is_some_and(char::is_whitespace) {
            *j += 1;
        }
    };
    loop {
        ws(&mut j);
        let start = j;
        while ch(j).is_some_and(|c| !c.is_whitespace() && c != '=') {
            j += 1;
        }
        if j == start {
            if ch(j) == Some('=') {
                return Err("not a libpq connection string: `=` without a keyword".into());
            }
            break;
        }
        let key = &s[at(start)..at(j)];
        ws(&mut j);
        if ch(j) != Some('=') {
            return Err(format!(
                "not a libpq connection string: `{key}` is not followed by `=`"
            ));
        }
        j += 1;
        ws(&mut j);
        let mut value = String::new();
        if ch(j) == Some('\'') {
            j += 1;
            loop {
                match ch(j) {
                    None => {
                        return Err("not a libpq connection string: a quoted value is not \
                                    closed"
                            .into());
                    }
                    Some('\'') => break,
                    Some('\\') if j + 1 < cs.len() => {
                        value.push(cs[j + 1].1);
                        j += 2;
                    }
                    Some(c) => {
                        value.push(c);
                        j += 1;
                    }
                }
            }
            j += 1;
        } else {
            while let Some(c) = ch(j).filter(|c| !c.is_whitespace()) {
                if c == '\\' && j + 1 < cs.len() {
                    j += 1;
                }
                value.push(cs[j].1);
                j += 1;
            }
        }
        present.push(key.to_string());
        if TAKEN.contains(&key) {
            rest.push_str(&s[kept_from..at(start)]);
            kept_from = at(j);
            taken.push((key.to_string(), value));
        }
    }
    rest.push_str(&s[kept_from..]);
    Ok((rest, taken, present))
}

/// A URL: the [`TAKEN`] parameters of its query (`?k=v&k=v`, percent-encoded) cut out;
/// also every keyword it gives, in its body or its query.
fn split_url(s: &str) -> Result<Split, String> {
    let mut present = Vec::new();
    // As tokio-postgres reads it: the credentials end at the first `@`, the query starts at
    // the first `?` after them.
    let body_at = s.find("://").map_or(0, |i| i + 3);
    let cred_end = s.find('@');
    if let Some(e) = cred_end {
        let creds = &s[body_at..e];
        let (user, password) = creds
            .split_once(':')
            .map_or((creds, None), |(u, p)| (u, Some(p)));
        if !user.is_empty() {
            present.push("user".into());
        }
        if password.is_some() {
            present.push("password".into());
        }
    }
    let after_creds = cred_end.map_or(body_at, |i| i + 1);
    let q = s[after_creds..].find('?').map(|i| i + after_creds);
    let main = &s[after_creds..q.unwrap_or(s.len())];
    let (netloc, path) = main.split_once('/').unwrap_or((main, ""));
    if !netloc.is_empty() {
        present.push("host".into());
        // A port after a name, an address, or a bracketed IPv6 address.
        if netloc
            .split(',')
            .any(|h| h.rsplit_once(']').map_or(h, |(_, p)| p).contains(':'))
        {
            present.push("port".into());
        }
    }
    if !path.is_empty() {
        present.push("dbname".into());
    }
    let Some(q) = q else {
        return Ok((s.to_string(), Vec::new(), present));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for param in s[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(k)?;
        present.push(key.clone());
        if TAKEN.contains(&key.as_str()) {
            taken.push((key, percent_decode(v)?));
        } else {
            kept.push(param);
        }
    }
    let mut rest = s[..q].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, taken, present))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("not a libpq connection string: a bad `%` in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("not a libpq connection string: `{s}`"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
