//! The string splitting, the sslmode mapping and the files of `pgtls`.

use super::*;

fn split(conn: &str) -> Result<(String, TlsKeys), String> {
    super::split(conn, &Env::default()).map(|(rest, keys, _)| (rest, keys))
}

fn keys(conn: &str) -> (String, TlsKeys) {
    split(conn).unwrap()
}

#[test]
fn libpqs_other_tls_keywords_are_read_and_bad_values_named() {
    let (rest, k) = keys(
        "host=db sslsni=0 sslcompression=1 sslcertmode=disable sslpassword=x \
         ssl_min_protocol_version=TLSv1.3",
    );
    assert_eq!(rest.split_whitespace().collect::<Vec<_>>(), ["host=db"]);
    assert!(k.no_sni && k.key_password);
    assert_eq!(k.cert_mode, CertMode::Disable);
    assert_eq!(tls_versions(&k).unwrap(), [&rustls::version::TLS13]);
    // The older spelling of sslmode: the last one written wins, as in libpq.
    assert_eq!(keys("host=db requiressl=1").1.mode, SslMode::Require);
    assert_eq!(
        keys("host=db requiressl=1 sslmode=disable").1.mode,
        SslMode::Disable
    );
    assert_eq!(
        keys("host=db sslmode=disable requiressl=1").1.mode,
        SslMode::Require
    );
    assert_eq!(keys("host=db requiressl=0").1.mode, SslMode::Prefer);
    let (_, k) = keys("host=db ssl_max_protocol_version=TLSv1.2");
    assert_eq!(tls_versions(&k).unwrap(), [&rustls::version::TLS12]);
    let (_, k) = keys("host=db ssl_max_protocol_version=TLSv1.1");
    assert!(tls_versions(&k).unwrap_err().contains("TLSv1.2"));
    for (bad, says) in [
        ("sslsni=yes", "sslsni=yes: 0 or 1"),
        ("sslcertmode=always", "sslcertmode=always"),
        ("sslcertmode=require", "sslcertmode=require: give"),
        (
            "ssl_min_protocol_version=TLSv2",
            "ssl_min_protocol_version=TLSv2",
        ),
    ] {
        let e = split(&format!("host=db {bad}")).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
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
fn white_space_is_any_that_tokio_postgres_takes_and_an_empty_value_is_the_default() {
    // A no-break space separates pairs for tokio-postgres: so it does here.
    let (rest, k) = keys("host=db\u{a0}sslmode=require sslrootcert=");
    assert_eq!(
        (rest.as_str(), k.mode),
        ("host=db\u{a0} ", SslMode::Require)
    );
    assert_eq!(k.root_cert, None);
    assert!(k.mode_given);
}

#[test]
fn the_systems_cas_are_for_verify_full_only() {
    let (_, k) = keys("host=db sslrootcert=system");
    assert_eq!(k.mode, SslMode::VerifyFull);
    for weak in ["disable", "prefer", "require", "verify-ca"] {
        let e = split(&format!("host=db sslmode={weak} sslrootcert=system")).unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
    }
    let (_, k) = keys("host=db sslmode=verify-full sslrootcert=system");
    assert_eq!(k.mode, SslMode::VerifyFull);
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
    // A value tokio-postgres does not take: the keyword and the values it does.
    let e = parse("host=h target_session_attrs=primary").err().unwrap();
    assert!(
        e.contains("`target_session_attrs`") && e.contains("one of any, read-write"),
        "{e}"
    );
    assert!(
        split("postgres://h/db?sslmode=%zz")
            .unwrap_err()
            .contains('%')
    );
}

#[test]
fn each_sslmode_asks_tokio_postgres_for_tls_as_libpq_would() {
    let mode = |s: &str| parse(s).map(|t| t.pg.get_ssl_mode());
    let both = |s: &str| parse(s).map(|t| (t.pg.get_ssl_mode(), t.then));
    assert_eq!(both("host=db sslmode=disable"), Ok((PgMode::Disable, None)));
    // libpq's two tries: allow without TLS first, prefer with TLS first.
    assert_eq!(
        both("host=db sslmode=allow"),
        Ok((PgMode::Disable, Some(PgMode::Require)))
    );
    assert_eq!(both("host=db"), Ok((PgMode::Prefer, Some(PgMode::Disable))));
    assert_eq!(both("host=db sslmode=require"), Ok((PgMode::Require, None)));
    // A Unix socket never has TLS, and needs none of its files.
    assert_eq!(
        both("host=/run/postgresql sslmode=require"),
        Ok((PgMode::Disable, None))
    );
    assert_eq!(
        both("host=/run/postgresql sslmode=allow"),
        Ok((PgMode::Disable, None))
    );
    assert_eq!(
        mode("host=/run/postgresql sslmode=verify-full sslrootcert=/nonexistent.pem"),
        Ok(PgMode::Disable)
    );
    assert!(mode("host=db sslmode=verify-full sslrootcert=/nonexistent.pem").is_err());
    // A hostaddr is reached over TCP, whatever host says: TLS as asked.
    assert_eq!(
        mode("host=/run/postgresql hostaddr=10.0.0.5 sslmode=require"),
        Ok(PgMode::Require)
    );
    assert!(parse("dbname=siplb").err().unwrap().contains("no host"));
    // An address alone: named by it for the handshake, short of verify-full.
    let pg = parse("hostaddr=10.0.0.5 sslmode=require").unwrap().pg;
    assert_eq!(pg.get_hosts(), &[Host::Tcp("10.0.0.5".into())]);
    let e = parse("hostaddr=10.0.0.5 sslmode=verify-full")
        .err()
        .unwrap();
    assert!(e.contains("host=<that name>"), "{e}");
    let pg = parse("hostaddr=10.0.0.5 sslmode=disable").unwrap().pg;
    assert!(pg.get_hosts().is_empty());
}

/// A self-signed CA certificate (its key thrown away), good until 2126.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBkjCCATegAwIBAgIUPW1qLekmc9bU2ixW2BT/r08YM2swCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSc2lwbGIgdW5pdCB0ZXN0IENBMCAXDTI2MTIwNDA5NDAwMloY
DzIxMjYxMTEwMDk0MDAyWjAdMRswGQYDVQQDDBJzaXBsYiB1bml0IHRlc3QgQ0Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQtI/My3nJtRWpFgwaNnGa703QKPBcS
1/8Jv2T1AVqaZmo0Qk/Vsvpxd8GYjYqfrVr0duLAxFIAEfSuRX/dQw+Yo1MwUTAd
BgNVHQ4EFgQU7UmVNEGzf7w02uQNOTrYI8iVn9UwHwYDVR0jBBgwFoAU7UmVNEGz
f7w02uQNOTrYI8iVn9UwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBG
AiEAvsxNLcsS+VOVV5aSRvQZ9/cijFFeJ6ZYszzPo9s+v3YCIQCmvgmemv6HvvCw
X45OmY6quO7FzjGd9DOGRZRvlws57Q==
-----END CERTIFICATE-----\n";

#[test]
fn revocation_lists_are_cut_out_and_read_when_the_certificate_is_checked() {
    let (rest, k) = keys("host=db sslcrl=/etc/crl.pem sslcrldir='/etc/crl dir' dbname=x");
    assert_eq!(rest, "host=db   dbname=x");
    assert_eq!(k.crl, Some(PathBuf::from("/etc/crl.pem")));
    assert_eq!(k.crl_dir, Some(PathBuf::from("/etc/crl dir")));
    let dir = std::env::temp_dir().join(format!("siplb-pgcrl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    // Any certificate will do as a root here: the lists are read before a connection.
    std::fs::write(&ca, TEST_CA).unwrap();
    let with = |crl: Option<&Path>, crl_dir: Option<&Path>, mode| TlsKeys {
        mode,
        root_cert: Some(ca.display().to_string()),
        crl: crl.map(Path::to_path_buf),
        crl_dir: crl_dir.map(Path::to_path_buf),
        ..TlsKeys::default()
    };
    let missing = dir.join("nope.pem");
    let e = connector(&with(Some(&missing), None, SslMode::VerifyCa), None)
        .err()
        .unwrap();
    assert!(e.starts_with("sslcrl=") && e.contains("nope.pem"), "{e}");
    let e = connector(&with(Some(&ca), None, SslMode::VerifyFull), None)
        .err()
        .unwrap();
    assert!(e.contains("no revocation list"), "{e}");
    let e = connector(&with(None, Some(&missing), SslMode::VerifyCa), None)
        .err()
        .unwrap();
    assert!(e.starts_with("sslcrldir="), "{e}");
    // Not checked, not read (as libpq).
    assert!(connector(&with(Some(&missing), None, SslMode::Prefer), None).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
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
