//! Keywords, services and password files of a libpq connection string.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn env_in(dir: &Path) -> Env {
    Env {
        home: Some(dir.to_path_buf()),
        sysconf_dir: Some(dir.join("sys")),
        ..Env::default()
    }
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("siplb-pgconn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("sys")).unwrap();
    d
}

#[test]
fn every_libpq_keyword_is_known_and_an_unknown_one_is_named() {
    let all = "host=h hostaddr=127.0.0.1 port=5432 dbname=d user=u password=p passfile=/p \
               require_auth=x channel_binding=prefer connect_timeout=3 client_encoding=UTF8 \
               options=-cx=y application_name=a fallback_application_name=f keepalives=1 \
               keepalives_idle=1 keepalives_interval=1 keepalives_count=1 tcp_user_timeout=1 \
               replication=0 gssencmode=disable sslmode=prefer requiressl=0 sslcompression=0 \
               sslcert=/c sslkey=/k sslpassword=x sslcertmode=allow sslrootcert=/r sslcrl=/l \
               sslcrldir=/d sslsni=1 requirepeer=x ssl_min_protocol_version=TLSv1.2 \
               ssl_max_protocol_version=TLSv1.3 krbsrvname=k gsslib=gssapi gssdelegation=0 \
               target_session_attrs=any load_balance_hosts=disable";
    // Every keyword is known: only the two siplb cannot honour are refused, by name.
    let e = read(all, &Env::default()).unwrap_err();
    assert!(e.contains("`require_auth` is not supported"), "{e}");
    let e = read(&all.replace("require_auth=x", ""), &Env::default()).unwrap_err();
    assert!(e.contains("`requirepeer` is not supported"), "{e}");
    let cs = read(
        &all.replace("require_auth=x", "")
            .replace("requirepeer=x", ""),
        &Env::default(),
    )
    .unwrap();
    // What tokio-postgres reads is left for it, and it reads it.
    let pg: tokio_postgres::Config = cs.rest.parse().unwrap();
    assert_eq!(pg.get_user(), Some("u"));
    assert_eq!(cs.get("fallback_application_name"), Some("f"));
    for (typo, meant) in [
        ("dbnme", "`dbname`?"),
        ("sslmod", "`sslmode`?"),
        ("DBNAME", "`dbname`?"),
        ("foo", "keyword"),
    ] {
        let e = read(&format!("host=h {typo}=x"), &Env::default()).unwrap_err();
        assert!(e.contains(&format!("`{typo}`")) && e.contains(meant), "{e}");
    }
    let e = read("postgres://h/db?dbnme=x", &Env::default()).unwrap_err();
    assert!(e.contains("`dbnme`"), "{e}");
}

#[test]
fn the_keywords_tokio_postgres_lacks_are_applied() {
    let apply_to = |s: &str| {
        let cs = read(s, &Env::default())?;
        let mut pg: tokio_postgres::Config = cs.rest.parse().map_err(|e| format!("{e}"))?;
        apply(&mut pg, &cs, &Env::default()).map(|()| pg)
    };
    let pg = apply_to("host=h user=u fallback_application_name=f keepalives_count=7").unwrap();
    assert_eq!(pg.get_application_name(), Some("f"));
    assert_eq!(pg.get_keepalives_retries(), Some(7));
    let pg = apply_to("host=h fallback_application_name=f application_name=a").unwrap();
    assert_eq!(pg.get_application_name(), Some("a"));
    assert!(apply_to("host=h client_encoding=utf8 gssencmode=prefer replication=false").is_ok());
    for (bad, says) in [
        ("client_encoding=LATIN1", "UTF8 only"),
        ("replication=database", "replication=database"),
        ("gssencmode=require", "GSSAPI"),
        ("keepalives_count=x", "keepalives_count=x"),
        ("min_protocol_version=3.2", "3.0"),
        ("target_session_attrs=read-only", "any or read-write"),
    ] {
        let e = apply_to(&format!("host=h {bad}")).unwrap_err();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn a_service_gives_what_the_string_does_not() {
    let d = temp("service");
    std::fs::write(
        d.join(".pg_service.conf"),
        "# accounting\n[acct]\nhost = db.example\nport=5433\ndbname=siplb\nsslmode=verify-full\n\
         application_name=svc\n\n[other]\nhost=elsewhere\n",
    )
    .unwrap();
    std::fs::write(
        d.join("sys/pg_service.conf"),
        "[sys]\nhost=sysdb\nuser=sys\n",
    )
    .unwrap();
    let env = env_in(&d);
    let cs = read("service=acct user=siplb application_name=mine", &env).unwrap();
    let pg: tokio_postgres::Config = cs.rest.parse().unwrap();
    assert_eq!(pg.get_ports(), [5433]);
    assert_eq!(pg.get_dbname(), Some("siplb"));
    assert_eq!(pg.get_user(), Some("siplb"));
    // The string's own keyword wins.
    assert_eq!(pg.get_application_name(), Some("mine"));
    assert_eq!(cs.get("sslmode"), Some("verify-full"));
    // A URL takes a service in its query; its host and port win over the service's (a
    // host without a port is on 5432, as tokio-postgres reads it).
    let cs = read("postgresql://u@mine:5999/x?service=acct", &env).unwrap();
    let pg: tokio_postgres::Config = cs.rest.parse().unwrap();
    assert_eq!(pg.get_ports(), [5999]);
    assert_eq!(pg.get_dbname(), Some("x"));
    assert_eq!(pg.get_application_name(), Some("svc"));
    let e = read("postgresql://u@mine/x?service=acct", &env).unwrap_err();
    assert!(e.contains("port=5433: write the port in the URL"), "{e}");
    // A service's hosts, one parameter each.
    std::fs::write(d.join("two.conf"), "[two]\nhost=a,b\nport=1,2\n").unwrap();
    let two = format!("servicefile={}", d.join("two.conf").display());
    let cs = read(&format!("postgresql:///x?service=two&{two}"), &env).unwrap();
    let pg: tokio_postgres::Config = cs.rest.parse().unwrap();
    assert_eq!(pg.get_hosts().len(), 2, "{}", cs.rest);
    assert_eq!(pg.get_ports(), [1, 2]);
    // A servicefile named is read first; the system's, when it has no such service, may be
    // missing.
    let e = read(&format!("service=none {two}"), &env).unwrap_err();
    assert!(e.contains("service `none` is not defined"), "{e}");
    // The system's file when the user's has no such service.
    let cs = read("service=sys", &env).unwrap();
    let pg: tokio_postgres::Config = cs.rest.parse().unwrap();
    assert_eq!(pg.get_user(), Some("sys"));
    // The service's requiressl is its sslmode, unless the string gives one.
    std::fs::write(d.join("ssl.conf"), "[ssl]\nhost=h\nrequiressl=1\n").unwrap();
    let ssl = format!("service=ssl servicefile={}", d.join("ssl.conf").display());
    assert_eq!(read(&ssl, &env).unwrap().get("sslmode"), Some("require"));
    let own = read(&format!("{ssl} sslmode=disable"), &env).unwrap();
    assert_eq!(own.get("sslmode"), Some("disable"));
    let e = read("service=nope", &env).unwrap_err();
    assert!(e.contains("service `nope` is not defined in"), "{e}");
    std::fs::write(d.join("bad.conf"), "[x]\nhots=h\n").unwrap();
    let e = read(
        &format!("service=x servicefile={}", d.join("bad.conf").display()),
        &env,
    )
    .unwrap_err();
    assert!(e.contains("bad.conf line 2") && e.contains("`hots`"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_password_comes_from_the_password_file_when_the_string_has_none() {
    let d = temp("pgpass");
    let file = d.join(".pgpass");
    std::fs::write(
        &file,
        "# host:port:db:user:password\nother:*:*:*:no\n\
         db.example:5432:siplb:siplb:s3cr\\:et:x\n*:*:*:admin:adm\nlocalhost:*:*:sock:viasocket\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = env_in(&d);
    let pw = |s: &str| {
        let cs = read(s, &env)?;
        let mut pg: tokio_postgres::Config = cs.rest.parse().map_err(|e| format!("{e}"))?;
        apply(&mut pg, &cs, &env).map(|()| pg.get_password().map(<[u8]>::to_vec))
    };
    // The password ends at its first `:` not escaped, as libpq reads it.
    assert_eq!(
        pw("host=db.example dbname=siplb user=siplb").unwrap(),
        Some(b"s3cr:et".to_vec())
    );
    assert_eq!(pw("host=any user=admin").unwrap(), Some(b"adm".to_vec()));
    assert_eq!(
        pw("host=/run/postgresql user=sock").unwrap(),
        Some(b"viasocket".to_vec())
    );
    assert_eq!(pw("host=db.example user=nobody").unwrap(), None);
    // `localhost` is the default socket folder, not any.
    assert_eq!(pw("host=/tmp/sock user=sock").unwrap(), None);
    // The string's own password wins.
    assert_eq!(
        pw("host=any user=admin password=p").unwrap(),
        Some(b"p".to_vec())
    );
    // Named by passfile: it must be there, and readable by its owner only.
    let named = d.join("named");
    let e = pw(&format!("host=h user=u passfile={}", named.display())).unwrap_err();
    assert!(e.contains("passfile"), "{e}");
    std::fs::write(&named, "*:*:*:u:named\n").unwrap();
    std::fs::set_permissions(&named, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = pw(&format!("host=h user=u passfile={}", named.display())).unwrap_err();
    assert!(e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&named, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        pw(&format!("host=h user=u passfile={}", named.display())).unwrap(),
        Some(b"named".to_vec())
    );
    let _ = std::fs::remove_dir_all(&d);
}
