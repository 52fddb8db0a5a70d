//! TLS to PostgreSQL as libpq's `sslmode` has it, with rustls: the TLS keys read out of the
//! connection string (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`; tokio-postgres takes
//! only part of them), and the connector they make.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | |
//! | `allow`, `prefer` (the default) | when the server offers it | not checked |
//! | `require` | always | not checked, or as for `verify-ca` when there is a root file |
//! | `verify-ca` | always | signed by a CA of the root file |
//! | `verify-full` | always | signed so, and issued for the host connected to |
//!
//! The root file is `sslrootcert`, else `~/.postgresql/root.crt` when it exists, as for
//! libpq; `sslrootcert=system` is the system's CAs. `sslcert` and `sslkey` give a client
//! certificate (both or neither; no default files). Over a Unix socket there is no TLS,
//! whatever `sslmode` says, as with libpq.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
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

    /// What tokio-postgres does with the socket: `allow` becomes `prefer` (TLS first).
    fn of_connection(self) -> PgMode {
        match self {
            SslMode::Disable => PgMode::Disable,
            SslMode::Allow | SslMode::Prefer => PgMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgMode::Require,
        }
    }
}

/// The TLS keys of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsKeys {
    pub mode: SslMode,
    /// A file of PEM certificates, or `system`.
    pub root_cert: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// A libpq connection string made ready to connect: tokio-postgres's settings and the TLS
/// connector. Every file it names is read here, so that a missing or bad one is an error at
/// once rather than at every connection.
pub fn parse(conn: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect), String> {
    let (rest, keys) = split(conn)?;
    let mut pg = rest
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a libpq connection string: {e}"))?;
    let unix_only =
        !pg.get_hosts().is_empty() && pg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if unix_only {
        // No TLS, so no file of the TLS keys is needed either (libpq does not read them).
        pg.ssl_mode(PgMode::Disable);
        return Ok((pg, connector(&TlsKeys::default(), None)?));
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
    pg.ssl_mode(keys.mode.of_connection());
    Ok((pg, connector(&keys, home.as_deref())?))
}

/// Takes the TLS keys out of `conn`: the rest of the string, as tokio-postgres parses it,
/// and the keys.
pub fn split(conn: &str) -> Result<(String, TlsKeys), String> {
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
        match k.as_str() {
            "sslmode" => keys.mode = SslMode::parse(&v)?,
            "sslrootcert" => keys.root_cert = Some(v),
            "sslcert" => keys.cert = Some(v.into()),
            _ => keys.key = Some(v.into()),
        }
    }
    Ok((rest, keys))
}

/// `key = value` pairs, a value either bare (up to white space) or in single quotes, with
/// `\` escaping the next character (the grammar of libpq and tokio-postgres). The TLS pairs
/// are cut out; the others stay as they were written.
fn split_key_values(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut rest = String::new();
    let mut kept_from = 0;
    let mut taken = Vec::new();
    let ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        ws(&mut i);
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        if i == start {
            break;
        }
        let key = &s[start..i];
        ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(format!(
                "not a libpq connection string: `{key}` is not followed by `=`"
            ));
        }
        i += 1;
        ws(&mut i);
        let mut value = Vec::new();
        if b.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match b.get(i) {
                    None => {
                        return Err("not a libpq connection string: a quoted value is not \
                                    closed"
                            .into());
                    }
                    Some(b'\'') => break,
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        if KEYS.contains(&key) {
            rest.push_str(&s[kept_from..start]);
            kept_from = i;
            taken.push((
                key.to_string(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
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
pub fn connector(keys: &TlsKeys, home: Option<&Path>) -> Result<MakeRustlsConnect, String> {
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
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
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
mod tests {
    use super::*;

    fn keys(conn: &str) -> (String, TlsKeys) {
        split(conn).unwrap()
    }

    #[test]
    fn the_tls_keys_are_cut_out_of_a_key_value_string_and_the_rest_kept_as_written() {
        let (rest, k) = keys(
            "host=db.example sslmode = verify-full password='a b\\'c' \
             sslrootcert='/etc/ca dir/ca.pem' dbname=siplb sslcert=/c.pem sslkey=/k\\ey.pem",
        );
        assert_eq!(rest, "host=db.example  password='a b\\'c'  dbname=siplb  ");
        assert_eq!(k.mode, SslMode::VerifyFull);
        assert_eq!(k.root_cert.as_deref(), Some("/etc/ca dir/ca.pem"));
        assert_eq!(k.cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(k.key, Some(PathBuf::from("/key.pem")));
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(pg.get_dbname(), Some("siplb"));
        // No TLS key: the default, and the string as it was.
        let (rest, k) = keys("host=/run/postgresql dbname=siplb");
        assert_eq!(
            (rest.as_str(), k),
            ("host=/run/postgresql dbname=siplb", TlsKeys::default())
        );
    }

    #[test]
    fn the_tls_keys_are_cut_out_of_a_urls_query() {
        let (rest, k) = keys(
            "postgresql://siplb:p%3Fw@db.example:5433/siplb?sslmode=verify-ca\
             &connect_timeout=5&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(
            rest,
            "postgresql://siplb:p%3Fw@db.example:5433/siplb?connect_timeout=5"
        );
        assert_eq!(k.mode, SslMode::VerifyCa);
        assert_eq!(k.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, k) = keys("postgres://h/db?sslmode=require");
        assert_eq!(
            (rest.as_str(), k.mode),
            ("postgres://h/db", SslMode::Require)
        );
        let (rest, _) = keys("postgres://h/db");
        assert_eq!(rest, "postgres://h/db");
    }

    #[test]
    fn a_bad_string_or_sslmode_is_an_error_that_says_what() {
        let e = split("host=h sslmode=always").unwrap_err();
        assert!(
            e.contains("sslmode=always") && e.contains("verify-full"),
            "{e}"
        );
        assert!(
            split("host=h password='x")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(split("host").unwrap_err().contains("`host`"));
        assert!(
            split("postgres://h/db?sslmode=%zz")
                .unwrap_err()
                .contains('%')
        );
    }

    #[test]
    fn each_sslmode_asks_tokio_postgres_for_tls_as_libpq_would() {
        let mode = |s: &str| parse(s).map(|(pg, _)| pg.get_ssl_mode());
        assert_eq!(mode("host=db sslmode=disable"), Ok(PgMode::Disable));
        assert_eq!(mode("host=db sslmode=allow"), Ok(PgMode::Prefer));
        assert_eq!(mode("host=db"), Ok(PgMode::Prefer));
        assert_eq!(mode("host=db sslmode=require"), Ok(PgMode::Require));
        // A Unix socket never has TLS, and needs none of its files.
        assert_eq!(
            mode("host=/run/postgresql sslmode=require"),
            Ok(PgMode::Disable)
        );
        assert_eq!(
            mode("host=/run/postgresql sslmode=verify-full sslrootcert=/nonexistent.pem"),
            Ok(PgMode::Disable)
        );
        assert!(mode("host=db sslmode=verify-full sslrootcert=/nonexistent.pem").is_err());
        // An address alone: named by it for the handshake, short of verify-full.
        let (pg, _) = parse("hostaddr=10.0.0.5 sslmode=require").unwrap();
        assert_eq!(pg.get_hosts(), &[Host::Tcp("10.0.0.5".into())]);
        let e = parse("hostaddr=10.0.0.5 sslmode=verify-full")
            .err()
            .unwrap();
        assert!(e.contains("host=<that name>"), "{e}");
        let (pg, _) = parse("hostaddr=10.0.0.5 sslmode=disable").unwrap();
        assert!(pg.get_hosts().is_empty());
    }

    #[test]
    fn a_check_of_the_certificate_needs_a_root_file_that_holds_a_ca() {
        let dir = std::env::temp_dir().join(format!("siplb-pgtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = |mode, root: Option<&str>| TlsKeys {
            mode,
            root_cert: root.map(str::to_string),
            ..TlsKeys::default()
        };
        let e = connector(&k(SslMode::VerifyFull, None), Some(&dir))
            .err()
            .unwrap();
        assert!(
            e.contains("sslrootcert=") && e.contains("verify-full"),
            "{e}"
        );
        let missing = dir.join("nope.pem");
        let e = connector(&k(SslMode::VerifyCa, missing.to_str()), None)
            .err()
            .unwrap();
        assert!(e.contains("nope.pem"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = connector(&k(SslMode::Require, empty.to_str()), None)
            .err()
            .unwrap();
        assert!(e.contains("no CA certificate"), "{e}");
        // Without a check, no file is needed.
        assert!(connector(&k(SslMode::Require, None), Some(&dir)).is_ok());
        let e = connector(
            &TlsKeys {
                cert: Some("/c.pem".into()),
                ..TlsKeys::default()
            },
            None,
        )
        .err()
        .unwrap();
        assert!(e.contains("sslcert and sslkey"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
