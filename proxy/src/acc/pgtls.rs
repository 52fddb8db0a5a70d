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

use super::pgconn::{self, ConnString, Env};
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
    /// `sslsni=0`: no server name in the handshake.
    pub no_sni: bool,
    /// `sslcertmode`.
    pub cert_mode: CertMode,
    /// `sslpassword` was given (said when the key cannot be read).
    pub key_password: bool,
    /// `ssl_min_protocol_version`, `ssl_max_protocol_version`: the minor of TLS 1.x.
    pub tls_min: Option<u8>,
    pub tls_max: Option<u8>,
}

/// libpq's `sslcertmode`: whether the client certificate is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertMode {
    Disable,
    #[default]
    Allow,
    Require,
}

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
    let env = Env::of_process();
    let (rest, keys, cs) = split(conn, &env)?;
    let mut pg = rest.parse::<tokio_postgres::Config>().map_err(|e| {
        // tokio-postgres says which keyword only in the error's cause.
        let cause = std::error::Error::source(&e).map_or(String::new(), |c| format!(": {c}"));
        let values = pgconn::VALUES
            .iter()
            .find(|(k, _)| cause.contains(&format!("`{k}`")))
            .map_or(String::new(), |(_, v)| format!(" (one of {v})"));
        format!("not a libpq connection string: {e}{cause}{values}")
    })?;
    pgconn::apply(&mut pg, &cs, &env)?;
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
    let home = env.home.clone();
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

/// Reads `conn` ([`pgconn::read`]) and its TLS keys: the rest of the string, as
/// tokio-postgres parses it, the keys, and the whole string taken apart.
fn split(conn: &str, env: &Env) -> Result<(String, TlsKeys, ConnString), String> {
    let cs = pgconn::read(conn, env)?;
    let mut keys = TlsKeys::default();
    let bool_of = |k: &str, v: &str| match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("{k}={v}: 0 or 1")),
    };
    for (k, v) in &cs.taken {
        // An empty value is the key's default, as with libpq.
        let v = Some(v.as_str()).filter(|v| !v.is_empty());
        match (k.as_str(), v) {
            ("sslmode", Some(v)) => {
                keys.mode = SslMode::parse(v)?;
                keys.mode_given = true;
            }
            ("sslmode", None) => keys.mode_given = false,
            ("sslrootcert", v) => keys.root_cert = v.map(str::to_string),
            ("sslcert", v) => keys.cert = v.map(PathBuf::from),
            ("sslkey", v) => keys.key = v.map(PathBuf::from),
            ("sslcrl", v) => keys.crl = v.map(PathBuf::from),
            ("sslcrldir", v) => keys.crl_dir = v.map(PathBuf::from),
            ("sslsni", v) => keys.no_sni = !bool_of(k, v.unwrap_or("1"))?,
            ("sslcertmode", v) => {
                keys.cert_mode = match v.unwrap_or("allow") {
                    "disable" => CertMode::Disable,
                    "allow" => CertMode::Allow,
                    "require" => CertMode::Require,
                    other => {
                        return Err(format!(
                            "sslcertmode={other}: not one of disable, allow, require"
                        ));
                    }
                }
            }
            ("sslpassword", v) => keys.key_password = v.is_some(),
            // TLS compression is off everywhere; libpq ignores it too.
            ("sslcompression", v) => {
                bool_of(k, v.unwrap_or("0"))?;
            }
            ("ssl_min_protocol_version", v) => {
                keys.tls_min = v.map(|v| tls_version(k, v)).transpose()?;
            }
            ("ssl_max_protocol_version", v) => {
                keys.tls_max = v.map(|v| tls_version(k, v)).transpose()?;
            }
            // Not TLS: [`pgconn::apply`].
            _ => {}
        }
    }
    if keys.cert_mode == CertMode::Require && keys.cert.is_none() {
        return Err("sslcertmode=require: give the certificate, sslcert and sslkey".into());
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
    Ok((cs.rest.clone(), keys, cs))
}

/// A TLS version as `ssl_min_protocol_version` and `ssl_max_protocol_version` (`key`) give
/// it: the minor number of TLS 1.x.
fn tls_version(key: &str, v: &str) -> Result<u8, String> {
    match v {
        "TLSv1" => Ok(0),
        "TLSv1.1" => Ok(1),
        "TLSv1.2" => Ok(2),
        "TLSv1.3" => Ok(3),
        other => Err(format!(
            "{key}={other}: not one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"
        )),
    }
}

/// The TLS versions rustls may use given the keys' bounds (it has 1.2 and 1.3 only).
fn tls_versions(keys: &TlsKeys) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let (min, max) = (keys.tls_min.unwrap_or(2), keys.tls_max.unwrap_or(3));
    let versions: Vec<_> = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, p)| p)
        .collect();
    if versions.is_empty() {
        return Err(format!(
            "ssl_min_protocol_version and ssl_max_protocol_version leave no TLS version siplb \
             speaks (TLSv1.2, TLSv1.3): from TLSv1.{min} to TLSv1.{max}"
        ));
    }
    Ok(versions)
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
        .with_protocol_versions(&tls_versions(keys)?)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let cert = (&keys.cert, &keys.key);
    let mut config = match cert {
        _ if keys.cert_mode == CertMode::Disable => builder.with_no_client_auth(),
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert={}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("sslcert={}: no certificate in it", cert.display()));
            }
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                let encrypted = std::fs::read_to_string(key)
                    .is_ok_and(|t| t.contains("ENCRYPTED") || t.contains("Proc-Type: 4,ENCRYPTED"));
                if encrypted {
                    format!(
                        "sslkey={}: the key is encrypted{}; siplb cannot decrypt it: store it \
                         decrypted, readable by siplb's user only (openssl pkey -in <key> -out \
                         <plain key>)",
                        key.display(),
                        if keys.key_password {
                            " (sslpassword)"
                        } else {
                            ""
                        }
                    )
                } else {
                    format!("sslkey={}: {e}", key.display())
                }
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("sslcert, sslkey: {e}"))?
        }
        _ => return Err("sslcert and sslkey go together: give both, or neither".into()),
    };
    config.enable_sni = !keys.no_sni;
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
