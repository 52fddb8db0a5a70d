//! TLS to PostgreSQL as libpq's `sslmode` has it, with rustls: the TLS keys read out of the
//! connection string (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `sslcrl`, `sslcrldir`;
//! tokio-postgres takes only part of them), and the connector they make.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | |
//! | `allow` | without first; with when that fails | not checked |
//! | `prefer` (the default) | with first when the server offers it; without when that fails | not checked |
//! | `require` | always | not checked, or as for `verify-ca` when there is a root file |
//! | `verify-ca` | always | signed by a CA of the root file |
//! | `verify-full` | always | signed so, and issued for the host connected to |
//!
//! The root file is `sslrootcert`, else `~/.postgresql/root.crt` when it exists, as for
//! libpq; `sslrootcert=system` is the system's CAs. `sslcert` and `sslkey` give a client
//! certificate (both or neither; no default files); `sslcrl` and `sslcrldir` revocation
//! lists, read when the certificate is checked. Over a Unix socket there is no TLS, whatever
//! `sslmode` says, as with libpq.

use super::pglimit::{self, PgError};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres::config::{Host, SslMode as PgMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, String> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other}: not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    /// What tokio-postgres is asked for at the first attempt, and at the second when the
    /// first fails (libpq's two tries: `allow` without TLS first, then with; `prefer` with
    /// TLS when the server offers it, then without).
    fn of_connection(self) -> (PgMode, Option<PgMode>) {
        match self {
            SslMode::Disable => (PgMode::Disable, None),
            SslMode::Allow => (PgMode::Disable, Some(PgMode::Require)),
            SslMode::Prefer => (PgMode::Prefer, Some(PgMode::Disable)),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => (PgMode::Require, None),
        }
    }
}

/// The TLS keys of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsKeys {
    pub mode: SslMode,
    /// `sslmode` was in the string (`sslrootcert=system` makes the default `verify-full`).
    pub mode_given: bool,
    /// A file of PEM certificates, or `system`.
    pub root_cert: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Certificate revocation lists (PEM): a file, and a folder of such files.
    pub crl: Option<PathBuf>,
    pub crl_dir: Option<PathBuf>,
}

const KEYS: [&str; 6] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
];

/// Where a connection goes and how: tokio-postgres's settings, the TLS connector, and the
/// TLS setting of a second attempt when the first fails (`allow`, `prefer`).
#[derive(Clone)]
pub struct PgTarget {
    pub pg: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub then: Option<PgMode>,
}

impl PgTarget {
    /// Connects as libpq would: once, and for `allow` and `prefer` once more the other way
    /// when the first attempt fails (refused by `pg_hba.conf` for its encryption, a TLS
    /// handshake that fails). The error of a second attempt tells both.
    pub async fn connect(&self) -> Result<(tokio_postgres::Client, PgConnection), ConnectError> {
        let first = match pglimit::connect(&self.pg, &mut self.tls.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        let Some(mode) = self.then else {
            return Err(ConnectError { first, then: None });
        };
        let mut pg = self.pg.clone();
        pg.ssl_mode(mode);
        pglimit::connect(&pg, &mut self.tls.clone())
            .await
            .map_err(|e| ConnectError {
                first,
                then: Some((mode, e)),
            })
    }
}

/// A connection's I/O half, to be polled (spawned) while its client is used.
pub type PgConnection =
    pglimit::PgConnection<
        <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
            pglimit::Limited<pglimit::Socket>,
        >>::Stream,
    >;

/// Why a connection failed: the first attempt's error, and the second's when there was one.
#[derive(Debug)]
pub struct ConnectError {
    pub first: PgError,
    pub then: Option<(PgMode, PgError)>,
}

/// A libpq connection string made ready to connect: tokio-postgres's settings and the TLS
/// connector. Every file it names is read here, so that a missing or bad one is an error at
/// once rather than at every connection.
pub fn parse(conn: &str) -> Result<PgTarget, String> {
    let (rest, keys) = split(conn)?;
    let mut pg = rest
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a libpq connection string: {e}"))?;
    if pg.get_ssl_mode() != PgMode::Prefer {
        // The split missed an sslmode that tokio-postgres read: never connect on a guess.
        return Err(
            "sslmode is written in a way siplb does not read; write it as sslmode=<mode>".into(),
        );
    }
    if pg.get_hosts().is_empty() && pg.get_hostaddrs().is_empty() {
        return Err(
            "no host: give host=<name, address or Unix socket folder> (or hostaddr)".into(),
        );
    }
    // A `hostaddr` is connected to over TCP whatever `host` says.
    let unix_only =
        pg.get_hostaddrs().is_empty() && pg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if unix_only {
        // No TLS, so no file of the TLS keys is needed either (libpq does not read them).
        pg.ssl_mode(PgMode::Disable);
        let tls = connector(&TlsKeys::default(), None)?;
        return Ok(PgTarget {
            pg,
            tls,
            then: None,
        });
    }
    if pg.get_hosts().is_empty() && !pg.get_hostaddrs().is_empty() && keys.mode != SslMode::Disable
    {
        // tokio-postgres names the server for TLS by `host` only, and without one refuses
        // the handshake; libpq needs no name short of verify-full, and for it a `host`.
        if keys.mode == SslMode::VerifyFull {
            return Err(
                "sslmode=verify-full checks the server's certificate against `host`, \
                        the name it is issued for: give host=<that name> beside hostaddr"
                    .into(),
            );
        }
        for addr in pg.get_hostaddrs().to_vec() {
            pg.host(addr.to_string());
        }
    }
    let (first, then) = keys.mode.of_connection();
    pg.ssl_mode(first);
    let tls = connector(&keys, home.as_deref())?;
    Ok(PgTarget { pg, tls, then })
}

/// Takes the TLS keys out of `conn`: the rest of the string, as tokio-postgres parses it,
/// and the keys.
fn split(conn: &str) -> Result<(String, TlsKeys), String> {
    let trimmed = conn.trim_start();
    let (rest, pairs) = if ["postgres://", "postgresql://"]
        .iter()
        .any(|p| trimmed.starts_with(p))
    {
        split_url(trimmed)?
    } else {
        split_key_values(conn)?
    };
    let mut keys = TlsKeys::default();
    for (k, v) in pairs {
        // An empty value is the key's default, as with libpq.
        let v = Some(v).filter(|v| !v.is_empty());
        match (k.as_str(), v) {
            ("sslmode", Some(v)) => {
                keys.mode = SslMode::parse(&v)?;
                keys.mode_given = true;
            }
            ("sslmode", None) => keys.mode_given = false,
            ("sslrootcert", v) => keys.root_cert = v,
            ("sslcert", v) => keys.cert = v.map(PathBuf::from),
            ("sslcrl", v) => keys.crl = v.map(PathBuf::from),
            ("sslcrldir", v) => keys.crl_dir = v.map(PathBuf::from),
            (_, v) => keys.key = v.map(PathBuf::from),
        }
    }
    if keys.root_cert.as_deref() == Some("system") {
        // libpq (PostgreSQL 16): the system's CAs vouch for any name, so only verify-full.
        if !keys.mode_given {
            keys.mode = SslMode::VerifyFull;
        } else if keys.mode != SslMode::VerifyFull {
            return Err(
                "sslrootcert=system takes sslmode=verify-full only (any public CA vouches \
                 for a certificate of some name; the name is what is checked)"
                    .into(),
            );
        }
    }
    Ok((rest, keys))
}

/// `key = value` pairs, a value either bare (up to white space) or in single quotes, with
/// `\` escaping the next character (the grammar of libpq and tokio-postgres). The TLS pairs
/// are cut out; the others stay as they were written.
fn split_key_values(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    // By character, white space as tokio-postgres has it (`char::is_whitespace`).
    let cs: Vec<(usize, char)> = s.char_indices().collect();
    let at = |j: usize| cs.get(j).map_or(s.len(), |&(i, _)| i);
    let ch = |j: usize| cs.get(j).map(|&(_, c)| c);
    let mut j = 0;
    let mut rest = String::new();
    let mut kept_from = 0;
    let mut taken = Vec::new();
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
        if KEYS.contains(&key) {
            rest.push_str(&s[kept_from..at(start)]);
            kept_from = at(j);
            taken.push((key.to_string(), value));
        }
    }
    rest.push_str(&s[kept_from..]);
    Ok((rest, taken))
}

/// A URL: the TLS parameters of its query (`?k=v&k=v`, percent-encoded) cut out.
fn split_url(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    // As tokio-postgres reads it: the credentials end at the first `@`, the query starts at
    // the first `?` after them.
    let after_creds = s.find('@').map_or(0, |i| i + 1);
    let Some(q) = s[after_creds..].find('?').map(|i| i + after_creds) else {
        return Ok((s.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for param in s[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(k)?;
        if KEYS.contains(&key.as_str()) {
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
    Ok((rest, taken))
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

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// The rustls connector for `keys`; `home` is where `~/.postgresql/root.crt` is looked for.
fn connector(keys: &TlsKeys, home: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let default_root = home
        .map(|h| h.join(".postgresql/root.crt"))
        .filter(|p| p.exists());
    let root = keys
        .root_cert
        .clone()
        .or_else(|| default_root.map(|p| p.display().to_string()));
    let check = match keys.mode {
        SslMode::VerifyFull => Check::ChainAndName,
        SslMode::VerifyCa => Check::Chain,
        SslMode::Require if root.is_some() => Check::Chain,
        _ => Check::Nothing,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (check, root) {
        (Check::Nothing, _) => Arc::new(Unchecked(provider.clone())),
        (_, None) => {
            return Err(format!(
                "sslmode={}: the server's certificate is checked against a CA's: \
                 sslrootcert=<PEM file> (libpq's default, ~/.postgresql/root.crt, is not \
                 there) or sslrootcert=system",
                if check == Check::Chain {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            ));
        }
        (_, Some(root)) => {
            let roots = Arc::new(root_store(&root)?);
            // With revocation lists, every certificate of the chain must be in the clear by
            // its issuer's list, as libpq has OpenSSL check them (CRL_CHECK_ALL).
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .with_crls(revocation_lists(keys)?)
                .build()
                .map_err(|e| format!("sslrootcert={root}: {e}"))?;
            if check == Check::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&keys.cert, &keys.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert={}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("sslcert={}: no certificate in it", cert.display()));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("sslkey={}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("sslcert, sslkey: {e}"))?
        }
        _ => return Err("sslcert and sslkey go together: give both, or neither".into()),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The revocation lists of `sslcrl` (a PEM file) and `sslcrldir` (every file in the folder
/// that holds one; libpq names them by hash). Read only when the certificate is checked.
fn revocation_lists(keys: &TlsKeys) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let read = |path: &Path| {
        CertificateRevocationListDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
    };
    let mut crls = Vec::new();
    if let Some(f) = &keys.crl {
        let found = read(f).map_err(|e| format!("sslcrl={}: {e}", f.display()))?;
        if found.is_empty() {
            return Err(format!("sslcrl={}: no revocation list in it", f.display()));
        }
        crls.extend(found);
    }
    if let Some(dir) = &keys.crl_dir {
        let bad = |e: std::io::Error| format!("sslcrldir={}: {e}", dir.display());
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(bad)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            // A file that holds no list is not one (a README, a hash link's target twice).
            crls.extend(read(&f).unwrap_or_default());
        }
    }
    Ok(crls)
}

/// The CAs of a PEM file, or of the system (`system`).
fn root_store(root: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let certs = if root == "system" {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(format!(
                "sslrootcert=system: no CA certificates found on this system ({:?})",
                found.errors
            ));
        }
        found.certs
    } else {
        CertificateDer::pem_file_iter(root)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("sslrootcert={root}: {e}"))?
    };
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("sslrootcert={root}: no CA certificate in it"));
    }
    Ok(store)
}

/// `verify-ca`: the chain is checked, the name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked after the chain: a wrong name means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`, `require` without a root file: encrypted, the certificate taken as it comes
/// (the handshake's signatures are still checked).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
