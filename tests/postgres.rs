//! The PostgreSQL accounting sink end to end: a real PostgreSQL server (Debian's
//! `postgresql`, started here in a temporary folder as user `postgres`, on a private unix
//! socket only), the real siplb binary writing `acc` and `cdrs` to files and to PostgreSQL,
//! driven by sipp. The server is stopped in the middle of the run and started again: every
//! record arrives exactly once, in the order of the files, and the spool empties. Another
//! server speaks TLS only, on 127.0.0.1, with a certificate of a CA the test makes.

use siplb_tests::*;
use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_siplb");
const PORT: u16 = 55432;
/// The TLS server's port (its TCP port on 127.0.0.1 and its socket's name).
const TLS_PORT: u16 = 55433;

/// The `postgres` user's uid and gid.
fn postgres_user() -> (u32, u32) {
    let name = CString::new("postgres").unwrap();
    // SAFETY: getpwnam with a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "no `postgres` user: `apt-get install postgresql` (`cargo xtask ci` installs it)"
    );
    // SAFETY: non-null, as checked.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// The server binaries' folder, `/usr/lib/postgresql/<version>/bin`.
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().expect(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
         `apt-get install postgresql` (`cargo xtask ci` installs it)",
    )
}

/// A PostgreSQL server of the test's own: data and socket in `dir`, stopped on drop.
struct Pg {
    bin: PathBuf,
    data: PathBuf,
    socket: PathBuf,
    user: (u32, u32),
    port: u16,
    /// TLS on 127.0.0.1 (the certificates in `data`), and nothing else but the Unix socket.
    tls: bool,
    server: Option<Child>,
}

impl Pg {
    fn new(dir: &Path) -> Pg {
        Pg::make(dir, false)
    }

    /// A server that takes TCP connections on 127.0.0.1 with TLS only (`hostnossl` is
    /// rejected; but role `siplb_plain`, without TLS only), its certificate issued for
    /// `localhost` by the CA of [`Pg::ca`].
    fn with_tls(dir: &Path) -> Pg {
        Pg::make(dir, true)
    }

    fn make(dir: &Path, tls: bool) -> Pg {
        let bin = pg_bin();
        let user = postgres_user();
        let data = dir.join("pgdata");
        let socket = dir.join("pgsock");
        for d in [&data, &socket] {
            std::fs::create_dir_all(d).unwrap();
            std::os::unix::fs::chown(d, Some(user.0), Some(user.1)).unwrap();
        }
        let out = Command::new(bin.join("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
            ])
            .args(["--no-sync", "-E", "UTF8", "--locale=C"])
            .uid(user.0)
            .gid(user.1)
            .current_dir(dir)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if tls {
            make_certs(dir, &data, user);
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all siplb_cert 127.0.0.1/32 cert\n\
                 hostssl all siplb_scram 127.0.0.1/32 scram-sha-256\n\
                 hostssl all siplb_plain 127.0.0.1/32 reject\n\
                 hostnossl all siplb_plain 127.0.0.1/32 trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
        }
        let mut pg = Pg {
            bin,
            data,
            socket,
            user,
            port: if tls { TLS_PORT } else { PORT },
            tls,
            server: None,
        };
        pg.start();
        pg.psql("postgres", "CREATE DATABASE siplb");
        pg
    }

    /// Starts the server and waits until it answers.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.parent().unwrap().join("postgres.log"))
            .unwrap();
        let listen = if self.tls {
            vec![
                "listen_addresses=127.0.0.1",
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
                // The CA of client certificates (`cert` in pg_hba.conf).
                "ssl_ca_file=ca.crt",
            ]
        } else {
            vec!["listen_addresses="]
        };
        let child = Command::new(self.bin.join("postgres"))
            .args(["-D", self.data.to_str().unwrap()])
            .args(["-k", self.socket.to_str().unwrap()])
            .args(["-p", &self.port.to_string()])
            // Heap order is insert order (no vacuum reuses space).
            .args(["-c", "autovacuum=off"])
            .args(listen.iter().flat_map(|l| ["-c", l]))
            .uid(self.user.0)
            .gid(self.user.1)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.try_psql("postgres", "SELECT 1");
            if out.as_deref() == Ok("1") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not come up: {out:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGINT: fast shutdown, the connections cut) and waits.
    fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            // SAFETY: signalling the server we started, by its PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.parent().unwrap().join("postgres.log"))
            .unwrap_or_default()
    }

    /// The connection string siplb gets.
    fn conn(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=siplb",
            self.socket.display(),
            self.port
        )
    }

    /// The CA that issued the TLS server's certificate.
    fn ca(&self) -> PathBuf {
        self.data.parent().unwrap().join("ca.crt")
    }

    fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                self.socket.to_str().unwrap(),
                "-p",
                &self.port.to_string(),
            ])
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into())
        }
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// siplb's tables, made as an administrator would, from proxy/sql/acc.sql.
    fn make_tables(&self) {
        let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../proxy/sql/acc.sql");
        self.psql("siplb", &std::fs::read_to_string(schema).unwrap());
    }

    /// The ids of `table`, in the order they were inserted.
    fn ids(&self, table: &str) -> Vec<String> {
        let out = self.psql("siplb", &format!("SELECT id FROM {table} ORDER BY ctid"));
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA (`<dir>/ca.crt`), the server certificate it issues for `localhost` and its key (copied
/// into `data` for the server), a client certificate for role `siplb_cert`
/// (`<dir>/client.crt`, `client.key`) and revocation lists; made with `openssl`.
fn make_certs(dir: &Path, data: &Path, user: (u32, u32)) {
    let openssl = |args: String| {
        let mut cmd = Command::new("openssl");
        // The subject last: it holds a space.
        let (args, subject) = args.split_once(" -subj ").unwrap_or((&args, ""));
        cmd.args(args.split(' '));
        if !subject.is_empty() {
            cmd.args(["-subj", subject]);
        }
        let out = cmd
            .current_dir(dir)
            .output()
            .expect("openssl (`apt-get install openssl`; `cargo xtask ci` installs it)");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(format!(
        "req -x509 {key} -days 2 -keyout ca.key -out ca.crt -subj /CN=siplb test CA"
    ));
    // X.509 v3 certificates (with an extension each), as rustls takes them.
    for (name, subject, ext) in [
        ("server", "localhost", "subjectAltName=DNS:localhost"),
        ("client", "siplb_cert", "extendedKeyUsage=clientAuth"),
    ] {
        openssl(format!(
            "req {key} -keyout {name}.key -out {name}.csr -subj /CN={subject}"
        ));
        std::fs::write(dir.join(format!("{name}.ext")), format!("{ext}\n")).unwrap();
        openssl(format!(
            "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
             -out {name}.crt -days 2 -extfile {name}.ext"
        ));
    }
    // Two revocation lists of the CA: `crl-empty.pem` (nothing revoked, in folder `crls/`
    // too) and `crl-server.pem` (the server's certificate revoked).
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         default_md = sha256\ndefault_crl_days = 2\n",
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    let ca = "-config ca.cnf -keyfile ca.key -cert ca.crt";
    openssl(format!("ca {ca} -gencrl -out crl-empty.pem"));
    openssl(format!("ca {ca} -revoke server.crt"));
    openssl(format!("ca {ca} -gencrl -out crl-server.pem"));
    std::fs::create_dir_all(dir.join("crls")).unwrap();
    std::fs::copy(dir.join("crl-empty.pem"), dir.join("crls/1a2b3c4d.r0")).unwrap();
    for f in ["server.crt", "server.key", "ca.crt"] {
        let to = data.join(f);
        std::fs::copy(dir.join(f), &to).unwrap();
        std::os::unix::fs::chown(&to, Some(user.0), Some(user.1)).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
}

/// The ids (second column) of a CSV file of the files sink, in file order.
fn csv_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).expect("an id column").to_string())
        .collect()
}

fn acc_config(net: Net, dir: &Path, pg: &Pg) -> String {
    acc_config_to(net, dir, &pg.conn())
}

/// [`acc_config`] with the connection string `conn`.
fn acc_config_to(net: Net, dir: &Path, conn: &str) -> String {
    config(
        net,
        2,
        &format!(
            r#"[acc]
flags = ["INVITE"]
cdrs = true
sinks = ["files", "postgres"]
formats = ["csv"]
dir = "{acc}"
postgres = "{conn}"

[[acc.rule]]
method = "BYE"
comment = "210 Bye received"
table = "acc"
"#,
            acc = dir.join("acc").display(),
        ),
    )
}

/// Waits until `f` holds, or panics with `what` after `secs`.
fn wait_until(secs: u64, what: impl Fn() -> String, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {}", what());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that `table` in PostgreSQL holds exactly the records of its CSV file, once each
/// and in the same order.
fn assert_same(pg: &Pg, dir: &Path, table: &str) -> usize {
    let files = csv_ids(&dir.join("acc").join(format!("{table}.csv")));
    let rows = pg.ids(table);
    let unique: HashSet<&String> = rows.iter().collect();
    assert_eq!(unique.len(), rows.len(), "{table}: no id twice");
    assert_eq!(
        rows.len(),
        files.len(),
        "{table}: as many rows as in the file"
    );
    assert!(
        rows == files,
        "{table}: the rows are in the order of the file"
    );
    rows.len()
}

/// `n` calls through siplb to the two gateways (sipp), every one answered.
fn calls(dir: &Path, net: Net, n: u32) {
    let uas1 = Sipp::uas(dir, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(dir, "uas2", &net.gw(2), "uas.xml", &[]);
    let uac = Sipp::caller(dir, net, "uac.xml", n, n, &[], 60);
    let _ = (uas1.finish(), uas2.finish());
    assert_eq!(uac.ok(), u64::from(n), "uac: {:?}", uac.fields);
}

/// Waits until `cdrs` in PostgreSQL holds `calls` CDRs and the spool is empty, then asserts
/// that `cdrs` and `acc` hold the records of their files once each, in order (`acc`: an
/// INVITE and a BYE record per call).
fn all_shipped(pg: &Pg, siplb: &Siplb, dir: &Path, calls: usize) {
    let count = || pg.try_psql("siplb", "SELECT count(*) FROM cdrs");
    wait_until(
        30,
        || format!("{:?} CDRs; {}", count(), siplb.log()),
        || count().as_deref() == Ok(calls.to_string().as_str()),
    );
    wait_until(
        10,
        || format!("spool {}", siplb.stat("acc:spool_records")),
        || siplb.stat("acc:spool_records") == 0,
    );
    assert_eq!(assert_same(pg, dir, "cdrs"), calls);
    assert_eq!(assert_same(pg, dir, "acc"), 2 * calls);
}

#[test]
fn records_land_in_postgresql_exactly_once_in_order_across_a_server_restart() {
    let _g = serial();
    require_sipp();
    let net = Net::new(81);
    let dir = TempDir::new("postgres");
    let mut pg = Pg::new(&dir.0);
    let siplb = Siplb::start(BIN, &dir.0, &acc_config(net, &dir.0, &pg));
    // The tables were made from proxy/sql/acc.sql as siplb connected.
    wait_until(
        10,
        || siplb.log(),
        || pg.try_psql("siplb", "SELECT count(*) FROM cdrs").as_deref() == Ok("0"),
    );
    let uas1 = Sipp::uas(&dir.0, "uas1", &net.gw(1), "uas.xml", &[]);
    let uas2 = Sipp::uas(&dir.0, "uas2", &net.gw(2), "uas.xml", &[]);
    let (d, target, ip) = (dir.0.clone(), net.siplb(), net.ip());
    let uac =
        std::thread::spawn(move || Sipp::uac(&d, "uac", &target, &ip, "uac.xml", 200, 50, &[], 60));
    // Down in the middle of the calls, for a while, then back.
    std::thread::sleep(Duration::from_millis(1500));
    pg.stop();
    std::thread::sleep(Duration::from_millis(1000));
    let spooled = siplb.stat("acc:spool_records");
    std::thread::sleep(Duration::from_millis(500));
    pg.start();
    let uac = uac.join().expect("uac");
    let _ = (uas1.finish(), uas2.finish());
    assert_eq!(uac.ok(), 200, "every call made it; uac: {:?}", uac.fields);
    assert!(
        spooled > 0,
        "records waited in the spool while PostgreSQL was down"
    );
    all_shipped(&pg, &siplb, &dir.0, 200);
    assert_eq!(
        pg.psql(
            "siplb",
            "SELECT count(*) FROM acc WHERE method = 'BYE' AND sip_code = 210 \
             AND sip_reason = 'Bye received'"
        ),
        "200"
    );
    // Typed columns: times, durations, JSON.
    assert_eq!(
        pg.psql(
            "siplb",
            "SELECT count(*) FROM cdrs WHERE disposition = 'answered' AND sip_code = 200 \
             AND answer_time >= invite_time AND duration >= billsec \
             AND jsonb_typeof(vars) = 'object'"
        ),
        "200"
    );
    assert!(
        siplb.log().contains("PostgreSQL is reachable again"),
        "{}",
        siplb.log()
    );
    assert!(
        siplb
            .log()
            .contains("connected to PostgreSQL, database siplb as postgres, without TLS"),
        "{}",
        siplb.log()
    );
    drop(siplb);
}

#[test]
fn records_spooled_while_postgresql_is_down_are_shipped_at_the_next_start() {
    let _g = serial();
    require_sipp();
    let net = Net::new(82);
    let dir = TempDir::new("postgres-restart");
    let mut pg = Pg::new(&dir.0);
    let config = acc_config(net, &dir.0, &pg);
    let mut siplb = Siplb::start(BIN, &dir.0, &config);
    wait_until(
        10,
        || siplb.log(),
        || pg.try_psql("siplb", "SELECT count(*) FROM cdrs").as_deref() == Ok("0"),
    );
    pg.stop();
    calls(&dir.0, net, 50);
    wait_until(
        10,
        || format!("spool {}", siplb.stat("acc:spool_records")),
        || siplb.stat("acc:spool_records") == 150,
    );
    // siplb stops while the database is away: the records stay in the spool.
    siplb.stop();
    assert!(siplb.log().contains("left in the spool"), "{}", siplb.log());
    drop(siplb);
    // Started without `acc.postgres`, siplb says what it leaves unshipped, and leaves it.
    let files_only = config
        .replace("sinks = [\"files\", \"postgres\"]", "sinks = [\"files\"]")
        .lines()
        .filter(|l| !l.starts_with("postgres ="))
        .collect::<Vec<_>>()
        .join("\n");
    let mut siplb = Siplb::start(BIN, &dir.0, &files_only);
    siplb.stop();
    assert!(
        siplb.log().contains("150 records in") && siplb.log().contains("were never shipped"),
        "{}",
        siplb.log()
    );
    drop(siplb);
    pg.start();
    assert_eq!(pg.psql("siplb", "SELECT count(*) FROM cdrs"), "0");
    let siplb = Siplb::start(BIN, &dir.0, &config);
    all_shipped(&pg, &siplb, &dir.0, 50);
    drop(siplb);
}

/// The ids of `table` in the files sink, less those in `without`, in file order.
fn csv_ids_without(dir: &Path, table: &str, without: &HashSet<String>) -> Vec<String> {
    csv_ids(&dir.join("acc").join(format!("{table}.csv")))
        .into_iter()
        .filter(|id| !without.contains(id))
        .collect()
}

#[test]
fn a_kamailio_acc_table_is_named_in_the_log_and_the_records_wait_until_it_is_moved() {
    let _g = serial();
    require_sipp();
    let net = Net::new(83);
    let dir = TempDir::new("postgres-kamailio");
    let pg = Pg::new(&dir.0);
    // The shape of Kamailio's own tables (kamdbctl): a serial id, no node, none of siplb's
    // extra columns.
    for t in ["acc", "missed_calls"] {
        pg.psql(
            "siplb",
            &format!(
                "CREATE TABLE {t} (id SERIAL PRIMARY KEY NOT NULL, \
                 method VARCHAR(16) DEFAULT '' NOT NULL, from_tag VARCHAR(128) DEFAULT '' NOT NULL, \
                 to_tag VARCHAR(128) DEFAULT '' NOT NULL, callid VARCHAR(255) DEFAULT '' NOT NULL, \
                 sip_code VARCHAR(3) DEFAULT '' NOT NULL, sip_reason VARCHAR(128) DEFAULT '' NOT NULL, \
                 time TIMESTAMP WITHOUT TIME ZONE NOT NULL)"
            ),
        );
    }
    let siplb = Siplb::start(BIN, &dir.0, &acc_config(net, &dir.0, &pg));
    calls(&dir.0, net, 20);
    // An INVITE, a BYE and a CDR per call, all waiting.
    wait_until(
        10,
        || format!("spool {}; {}", siplb.stat("acc:spool_records"), siplb.log()),
        || siplb.stat("acc:spool_records") == 60,
    );
    std::thread::sleep(Duration::from_secs(3));
    let log = siplb.log();
    assert!(
        log.contains("table acc has no column node, src_user, src_domain"),
        "the log names the table and what it lacks: {log}"
    );
    // Said once, not at every attempt (a connection every backoff for 4 s and more).
    let said = log.matches("PostgreSQL refuses the records").count();
    assert_eq!(said, 1, "{log}");
    assert!(siplb.stat("acc:sink_errors") >= 3, "each attempt counted");
    assert_eq!(pg.psql("siplb", "SELECT count(*) FROM acc"), "0");
    assert_eq!(pg.psql("siplb", "SELECT count(*) FROM cdrs"), "0");
    // Moved away: siplb makes its own tables at its next attempt and ships everything.
    pg.psql(
        "siplb",
        "ALTER TABLE acc RENAME TO kamailio_acc; \
         ALTER TABLE missed_calls RENAME TO kamailio_missed_calls",
    );
    all_shipped(&pg, &siplb, &dir.0, 20);
    assert!(siplb.log().contains("PostgreSQL is reachable again"));
    drop(siplb);
}

#[test]
fn a_record_postgresql_refuses_is_set_aside_and_the_records_after_it_land() {
    let _g = serial();
    require_sipp();
    let net = Net::new(84);
    let dir = TempDir::new("postgres-refused");
    let pg = Pg::new(&dir.0);
    // siplb's tables, a column made narrower by hand than an INVITE (a BYE fits), and a
    // constraint an operator added that every answered call's CDR breaks; also columns of
    // the operator's own, filled by the database (Kamailio's `acc` has an `id SERIAL`),
    // which siplb's records leave to it.
    pg.make_tables();
    pg.psql(
        "siplb",
        "ALTER TABLE acc ALTER COLUMN method TYPE varchar(3); \
         ALTER TABLE cdrs ADD CONSTRAINT unanswered CHECK (disposition <> 'answered'); \
         ALTER TABLE acc ADD COLUMN row_id bigserial; \
         ALTER TABLE cdrs ADD COLUMN created_at timestamptz NOT NULL DEFAULT now()",
    );
    let siplb = Siplb::start(BIN, &dir.0, &acc_config(net, &dir.0, &pg));
    calls(&dir.0, net, 30);
    let stats = || {
        format!(
            "spool {}, rejected {}; {}",
            siplb.stat("acc:spool_records"),
            siplb.stat("acc:rejected_records"),
            siplb.log()
        )
    };
    wait_until(20, stats, || {
        siplb.stat("acc:spool_records") == 0 && siplb.stat("acc:rejected_records") == 60
    });
    // Set aside: the 30 INVITE records and the 30 CDRs, each with its table, its columns and
    // the server's word.
    let rejected = dir.0.join("acc/spool/rejected.jsonl");
    let set_aside = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&rejected)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut refused = HashSet::new();
    for v in set_aside() {
        if v["table"] == "cdrs" {
            assert!(v["error"].as_str().unwrap().contains("unanswered"), "{v}");
            assert!(v["record"]["vars"].is_object(), "{v}");
            continue;
        }
        assert_eq!(v["table"], "acc", "{v}");
        assert_eq!(v["record"]["method"], "INVITE", "{v}");
        assert!(v["error"].as_str().unwrap().contains("varying(3)"), "{v}");
        refused.insert(v["record"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(refused.len(), 30, "{:?}", set_aside());
    // The rest landed once each, in the order of the files.
    assert_eq!(
        pg.ids("acc"),
        csv_ids_without(&dir.0, "acc", &refused),
        "acc: the BYE records"
    );
    assert_eq!(pg.ids("acc").len(), 30);
    let log = siplb.log();
    assert_eq!(
        log.matches("PostgreSQL refused record").count(),
        60,
        "{log}"
    );

    // Once the column is wide again and the constraint gone, siplb's staging tables follow
    // without a reconnection (the one of `acc`, made while the column was narrow, is made
    // again): nothing more is refused.
    pg.psql(
        "siplb",
        "ALTER TABLE acc ALTER COLUMN method TYPE text; \
         ALTER TABLE cdrs DROP CONSTRAINT unanswered",
    );
    calls(&dir.0, net, 10);
    let count = |t: &str| pg.psql("siplb", &format!("SELECT count(*) FROM {t}"));
    wait_until(20, stats, || count("cdrs") == "10");
    assert_eq!(siplb.stat("acc:rejected_records"), 60, "{}", stats());
    assert_eq!(count("acc"), "50");
    assert_eq!(siplb.stat("acc:sink_errors"), 0, "{}", stats());

    // Shipped again while the database refuses them for its setup (a trigger that says the
    // role may not insert): kept in retry-failed.jsonl, a second such retry added to the
    // first's, none lost.
    let spool = dir.0.join("acc/spool");
    pg.psql(
        "siplb",
        "CREATE FUNCTION no_cdrs() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'not now' USING ERRCODE = '42501'; END $$; \
         CREATE TRIGGER no_cdrs BEFORE INSERT ON cdrs FOR EACH ROW EXECUTE FUNCTION no_cdrs()",
    );
    let lines = std::fs::read_to_string(&rejected).unwrap();
    std::fs::remove_file(&rejected).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    let failed = spool.join("retry-failed.jsonl");
    let kept = || {
        std::fs::read_to_string(&failed)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    for (half, after) in [(&lines[..30], 30), (&lines[30..], 60)] {
        let tmp = spool.join("retry.tmp");
        std::fs::write(&tmp, half.join("\n") + "\n").unwrap();
        std::fs::rename(&tmp, spool.join("retry.jsonl")).unwrap();
        wait_until(20, stats, || kept() == after);
        assert!(!spool.join("retry.jsonl").exists());
    }
    assert!(
        siplb.log().contains("records not shipped are added to"),
        "{}",
        siplb.log()
    );
    assert_eq!(count("cdrs"), "10");
    pg.psql("siplb", "DROP TRIGGER no_cdrs ON cdrs");

    // The set-aside records shipped again, as CDR.md tells: the file renamed retry.jsonl.
    std::fs::rename(&failed, dir.0.join("acc/spool/retry.jsonl")).unwrap();
    wait_until(20, stats, || count("cdrs") == "40" && count("acc") == "80");
    wait_until(5, stats, || !dir.0.join("acc/spool/retry.jsonl").exists());
    assert!(!rejected.exists(), "none refused again: {:?}", set_aside());
    assert!(
        siplb
            .log()
            .contains("60 landed (or had landed), 0 refused again"),
        "{}",
        siplb.log()
    );
    // Every record of the files once, with its values.
    for t in ["acc", "cdrs"] {
        let mut files = csv_ids(&dir.0.join("acc").join(format!("{t}.csv")));
        let mut rows = pg.ids(t);
        files.sort();
        rows.sort();
        assert_eq!(rows, files, "{t}");
    }
    assert_eq!(
        pg.psql(
            "siplb",
            "SELECT count(*) FROM cdrs JOIN acc USING (callid) WHERE acc.method = 'INVITE' \
             AND disposition = 'answered' \
             AND jsonb_typeof(vars) = 'object'"
        ),
        "40"
    );
    drop(siplb);

    // A retry a stop (or a crash) left under way is finished at the next start, before the
    // retry.jsonl waiting beside it is taken; records already in their tables land once.
    std::fs::write(
        spool.join("retry-shipping.jsonl"),
        lines[..2].join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(spool.join("retry.jsonl"), lines[2..5].join("\n") + "\n").unwrap();
    let siplb = Siplb::start(BIN, &dir.0, &acc_config(net, &dir.0, &pg));
    let left = || {
        ["retry.jsonl", "retry-shipping.jsonl"]
            .iter()
            .any(|f| spool.join(f).exists())
    };
    wait_until(15, || siplb.log(), || !left());
    let log = siplb.log();
    let (first, then) = (
        log.find("2 records of retry.jsonl shipped again: 2 landed"),
        log.find("3 records of retry.jsonl shipped again: 3 landed"),
    );
    assert!(first.is_some() && then.is_some() && first < then, "{log}");
    assert_eq!((count("acc"), count("cdrs")), ("80".into(), "40".into()));
    drop(siplb);
}

#[test]
fn a_connection_the_server_closes_while_idle_is_made_again_without_an_alarm() {
    let _g = serial();
    require_sipp();
    let net = Net::new(26);
    let dir = TempDir::new("postgres-idle");
    let pg = Pg::new(&dir.0);
    pg.make_tables();
    // What a server, a pooler or a firewall does to a connection left idle.
    pg.psql(
        "siplb",
        "ALTER DATABASE siplb SET idle_session_timeout = '1s'",
    );
    let siplb = Siplb::start(BIN, &dir.0, &acc_config(net, &dir.0, &pg));
    let count = || pg.psql("siplb", "SELECT count(*) FROM cdrs");
    for round in 1..=2 {
        calls(&dir.0, net, 2);
        wait_until(10, || siplb.log(), || count() == (2 * round).to_string());
        // Idle for longer than the server allows.
        std::thread::sleep(Duration::from_millis(1600));
    }
    let log = siplb.log();
    assert!(
        pg.log().contains("idle-session timeout"),
        "the server closed the connection: {}",
        pg.log()
    );
    assert!(log.contains("connection was closed; reconnecting"), "{log}");
    assert!(!log.contains("unreachable"), "{log}");
    assert!(!log.contains(" ERROR "), "{log}");
    assert_eq!(siplb.stat("acc:sink_errors"), 0, "{log}");
    all_shipped(&pg, &siplb, &dir.0, 4);
    drop(siplb);
}

#[test]
fn a_role_without_privileges_is_told_and_its_records_land_once_granted() {
    let _g = serial();
    require_sipp();
    let net = Net::new(85);
    let dir = TempDir::new("postgres-grant");
    let pg = Pg::new(&dir.0);
    // The tables made by an administrator; siplb's role may connect, nothing more.
    pg.make_tables();
    // And `cdrs` without its key, as a table partitioned by time would be.
    pg.psql("siplb", "ALTER TABLE cdrs DROP CONSTRAINT cdrs_pkey");
    pg.psql("siplb", "CREATE ROLE acc_writer LOGIN");
    let config = acc_config(net, &dir.0, &pg).replace("user=postgres", "user=acc_writer");
    let siplb = Siplb::start(BIN, &dir.0, &config);
    calls(&dir.0, net, 20);
    wait_until(
        10,
        || format!("spool {}; {}", siplb.stat("acc:spool_records"), siplb.log()),
        || siplb.stat("acc:spool_records") == 60,
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = siplb.log();
    // The privilege is named (not a table said to be missing), once.
    assert!(log.contains("permission denied for table acc"), "{log}");
    assert!(!log.contains("there is no table"), "{log}");
    assert_eq!(
        log.matches("PostgreSQL refuses the records").count(),
        1,
        "{log}"
    );
    pg.psql(
        "siplb",
        "GRANT SELECT, INSERT ON acc, missed_calls, cdrs TO acc_writer",
    );
    // Next: the table without the key the shipping needs is named.
    let keyless = "table cdrs: db error: ERROR: there is no unique or exclusion constraint \
                   matching the ON CONFLICT specification (table cdrs needs a primary key";
    wait_until(10, || siplb.log(), || siplb.log().contains(keyless));
    assert_eq!(
        pg.psql("siplb", "SELECT count(*) FROM acc"),
        "0",
        "one transaction"
    );
    pg.psql("siplb", "ALTER TABLE cdrs ADD PRIMARY KEY (node, id)");
    all_shipped(&pg, &siplb, &dir.0, 20);
    drop(siplb);
}

#[test]
fn records_ship_over_tls_as_sslmode_asks_and_a_certificate_that_fails_the_check_is_told() {
    let _g = serial();
    require_sipp();
    let net = Net::new(93);
    let dir = TempDir::new("postgres-tls");
    let pg = Pg::with_tls(&dir.0);
    let tcp = |host: &str, mode: &str| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={TLS_PORT} user=postgres dbname=siplb \
             sslmode={mode} sslrootcert={}",
            pg.ca().display()
        )
    };
    // siplb with `conn`, 10 more calls, and every record of the folder shipped (`total`
    // calls' worth): the running siplb.
    let ship = |conn: &str, total: usize| {
        let siplb = Siplb::start(BIN, &dir.0, &acc_config_to(net, &dir.0, conn));
        calls(&dir.0, net, 10);
        all_shipped(&pg, &siplb, &dir.0, total);
        siplb
    };
    // verify-full to 127.0.0.1: the certificate is for localhost. Told, and nothing lands.
    let mut siplb = Siplb::start(
        BIN,
        &dir.0,
        &acc_config_to(net, &dir.0, &tcp("127.0.0.1", "verify-full")),
    );
    calls(&dir.0, net, 10);
    wait_until(
        10,
        || siplb.log(),
        || siplb.log().contains("not valid for name"),
    );
    assert_eq!(siplb.stat("acc:spool_records"), 30, "{}", siplb.log());
    assert!(siplb.stat("acc:sink_errors") > 0);
    siplb.stop();
    drop(siplb);
    assert!(
        pg.try_psql("siplb", "SELECT count(*) FROM cdrs").is_err(),
        "no connection made the tables"
    );
    // verify-ca with a revocation list that revokes the server's certificate: refused.
    let revoked = format!(
        "{} sslcrl={}",
        tcp("127.0.0.1", "verify-ca"),
        dir.0.join("crl-server.pem").display()
    );
    let mut siplb = Siplb::start(BIN, &dir.0, &acc_config_to(net, &dir.0, &revoked));
    calls(&dir.0, net, 10);
    wait_until(10, || siplb.log(), || siplb.log().contains("Revoked"));
    assert_eq!(siplb.stat("acc:spool_records"), 60, "{}", siplb.log());
    siplb.stop();
    drop(siplb);
    // verify-ca checks the chain only (here with a folder of revocation lists that revoke
    // nothing): the records of the three runs land.
    let clean = format!(
        "{} sslcrldir={}",
        tcp("127.0.0.1", "verify-ca"),
        dir.0.join("crls").display()
    );
    let siplb = ship(&clean, 30);
    assert!(
        siplb
            .log()
            .contains("connected to PostgreSQL, database siplb as postgres, over TLSv1.3"),
        "{}",
        siplb.log()
    );
    drop(siplb);
    // verify-full to the name the certificate is for, as a URL.
    let ca = pg.ca().display().to_string().replace('/', "%2F");
    let crl = dir
        .0
        .join("crl-empty.pem")
        .display()
        .to_string()
        .replace('/', "%2F");
    let url = format!(
        "postgresql://postgres@localhost:{TLS_PORT}/siplb?hostaddr=127.0.0.1\
         &sslmode=verify-full&sslrootcert={ca}&sslcrl={crl}"
    );
    drop(ship(&url, 40));
    // require without a root file: encrypted, the certificate not checked (an address
    // without a name will do); a role with a password (SCRAM, bound to the TLS channel:
    // SCRAM-SHA-256-PLUS).
    pg.psql(
        "postgres",
        "CREATE ROLE siplb_scram LOGIN SUPERUSER PASSWORD 'pass word'",
    );
    // Where it goes from a connection service file, the password from a password file
    // (mode 600), as libpq takes them.
    let service = dir.0.join("pg_service.conf");
    std::fs::write(
        &service,
        format!(
            "[accounting]\nhostaddr=127.0.0.1\nport={TLS_PORT}\nuser=siplb_scram\n\
             dbname=siplb\nsslmode=require\n"
        ),
    )
    .unwrap();
    let pgpass = dir.0.join("pgpass");
    std::fs::write(&pgpass, "*:*:siplb:siplb_scram:pass word\n").unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let plain = format!(
        "service=accounting servicefile={} passfile={} channel_binding=require",
        service.display(),
        pgpass.display()
    );
    drop(ship(&plain, 50));
    // A role that logs in with a client certificate only (`cert` in pg_hba.conf).
    pg.psql("postgres", "CREATE ROLE siplb_cert LOGIN SUPERUSER");
    let cert = format!(
        "host=localhost hostaddr=127.0.0.1 port={TLS_PORT} user=siplb_cert dbname=siplb \
         sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
        pg.ca().display(),
        dir.0.join("client.crt").display(),
        dir.0.join("client.key").display()
    );
    let siplb = ship(&cert, 60);
    // The server takes TCP with TLS only; siplb's connection is one.
    assert_eq!(
        pg.psql(
            "siplb",
            "SELECT count(*) > 0 FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND datname = 'siplb' AND client_addr IS NOT NULL"
        ),
        "t"
    );
    drop(siplb);
    // prefer (the default) as a role the server takes without TLS only: the TLS attempt is
    // refused (pg_hba.conf), the second, without TLS, lands, as with libpq.
    pg.psql("postgres", "CREATE ROLE siplb_plain LOGIN SUPERUSER");
    let siplb = ship(
        &format!("hostaddr=127.0.0.1 port={TLS_PORT} user=siplb_plain dbname=siplb"),
        70,
    );
    assert!(
        siplb
            .log()
            .contains("database siplb as siplb_plain, without TLS"),
        "{}",
        siplb.log()
    );
    assert_eq!(siplb.stat("acc:sink_errors"), 0, "{}", siplb.log());
    drop(siplb);
    // allow: without TLS first, refused (hostnossl … reject), then over TLS.
    let siplb = ship(
        &format!("hostaddr=127.0.0.1 port={TLS_PORT} user=postgres dbname=siplb sslmode=allow"),
        80,
    );
    assert!(
        siplb
            .log()
            .contains("database siplb as postgres, over TLSv1.3"),
        "{}",
        siplb.log()
    );
    assert_eq!(siplb.stat("acc:sink_errors"), 0, "{}", siplb.log());
    drop(siplb);
}
