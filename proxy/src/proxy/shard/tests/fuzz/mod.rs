//! Mutation fuzzing of the shard: seeded scenarios of calls between the caller, the two
//! gateways and strangers, and RFC 4475's torture messages, where any message may be mangled
//! (bytes flipped, cut, repeated, headers added, dropped or renamed, numbers made huge) and
//! the clock jumps. Whatever comes in, the shard must not panic, everything it sends must
//! parse, every record its events make must encode to CSV and to JSON that parses, and once
//! the clock has run far enough nothing is left in its tables.
//!
//! `SIPLB_FUZZ_SCENARIOS=N` runs N scenarios instead of the default few (each seed is printed
//! when it fails, `SIPLB_FUZZ_SEED=S` runs that one alone), for example
//! `SIPLB_FUZZ_SCENARIOS=20000 cargo test --release -p siplb --lib shard::tests::fuzz`.

use super::*;
use crate::acc::accountant::Accountant;
use crate::acc::config::{AccConfig, AccRule, DEFAULT_QUEUE, Methods};
use crate::acc::plane::AccPlane;
use crate::proxy::event::Emit;

mod mutate;

use mutate::{Rng, mutate};

/// Scenarios of the default run, and steps per scenario.
const SCENARIOS: u64 = 100;
const STEPS: usize = 250;

/// The RFC 4475 and RFC 5118 torture messages of the parser's tests, read once.
fn torture() -> &'static [Vec<u8>] {
    static MESSAGES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    MESSAGES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/torture");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("tests/torture")
            .map(|e| e.expect("tests/torture").path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read(f).expect("a torture message"))
            .collect()
    })
}

/// `examples/acc.toml`'s `[acc]`, with the failed flag on BYE too, so that every kind of
/// record is made.
fn acc_config() -> Arc<AccConfig> {
    let mut flags = Methods::default();
    flags.insert(Method::Invite);
    let mut failed = Methods::default();
    failed.insert(Method::Invite);
    Arc::new(AccConfig {
        node: "fuzz".into(),
        flags,
        failed_flags: failed,
        missed_flags: flags,
        rules: vec![
            AccRule {
                method: Method::Bye,
                comment: "210 Bye received".into(),
                table: "acc".into(),
                account: None,
                prefix: None,
            },
            AccRule {
                method: Method::Options,
                comment: "probe \"quoted\", with a comma".into(),
                table: "probes".into(),
                account: None,
                prefix: Some("+1".into()),
            },
        ],
        cdrs: true,
        ..AccConfig::for_tests(std::env::temp_dir(), DEFAULT_QUEUE)
    })
}

/// One scenario: the shard, what it sent that a party may answer, and what came in.
struct Scenario {
    rng: Rng,
    h: Harness,
    plane: Arc<AccPlane>,
    acc: Accountant,
    /// Requests siplb sent to a gateway (INVITE, CANCEL, BYE, ACK …), newest last.
    to_gateways: Vec<Out>,
    /// Requests siplb sent to the caller (a gateway's BYE, siplb's own BYE).
    to_caller: Vec<Out>,
    /// Final 2xx answers siplb passed to the caller.
    answers: Vec<Out>,
    /// INVITEs the caller sent.
    invites: Vec<Req>,
    /// Datagrams delivered so far, to be sent again.
    sent: Vec<(SocketAddr, Vec<u8>)>,
    /// What was delivered last, told when something fails, and whether it parsed.
    last: String,
    last_parsed: bool,
    records: u64,
}

const KEEP: usize = 24;

fn keep<T>(v: &mut Vec<T>, x: T) {
    if v.len() == KEEP {
        v.remove(0);
    }
    v.push(x);
}

impl Scenario {
    fn new(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let variant = rng.below(4);
        let timers = DialogTimers {
            default_timeout: Duration::from_secs(120),
            early_timeout: Duration::from_secs(30),
            noack_timeout: Duration::from_secs(10),
        };
        let configure = move |c: &mut ProxyConfig| {
            c.emit = Emit {
                transactions: true,
                dialogs: true,
                failures: true,
                requests: true,
                transaction_methods: 0,
                request_methods: 0,
            };
            match variant {
                0 => {}
                1 => c.routing.gateways.sets[0].failover = true,
                2 => c.dialog = timers,
                _ => {
                    // Gateways that challenge: siplb answers with its trunk credentials.
                    c.routing.gateways.sets[0].failover = true;
                    for g in &mut c.routing.gateways.sets[0].gateways {
                        g.credentials = Some(crate::proxy::gateway::Credentials {
                            user: "siplb".into(),
                            secret: crate::proxy::gateway::Secret::Password("trunk-secret".into()),
                        });
                    }
                }
            }
        };
        let mut h = if variant == 2 {
            limited_with(2, timers, configure)
        } else {
            Harness::with_config(configure)
        };
        h.shard.set_epoch(h.now, 1_700_000_000_000);
        let plane = Arc::new(AccPlane::new(1, DEFAULT_QUEUE));
        let acc = Accountant::new(
            acc_config(),
            plane.clone(),
            0,
            1,
            1_700_000_000_000,
            h.stats.clone(),
        );
        Scenario {
            rng,
            h,
            plane,
            acc,
            to_gateways: Vec::new(),
            to_caller: Vec::new(),
            answers: Vec::new(),
            invites: Vec::new(),
            sent: Vec::new(),
            last: String::new(),
            last_parsed: true,
            records: 0,
        }
    }

    fn run(&mut self) {
        for _ in 0..STEPS {
            self.step();
        }
        // Far enough for every timer (Timer B/F, the dialogs' lifetimes) to have run.
        self.h.advance(Duration::from_secs(300));
        self.h.drive();
        self.collect();
        assert_eq!(self.h.shard.transactions(), 0, "transactions left");
        assert_eq!(self.h.shard.dialog_records(), 0, "dialogs left");
        // Every place a call took in a profile is given back.
        let profiles = &self.h.shard.cfg.profiles;
        if let Some(total) = profiles.get("total") {
            assert_eq!(total.size(None), 0, "calls left in profile total");
            let account = profiles.get(crate::dialog::ACCOUNT).unwrap();
            for user in ["alice", "user0", "user1", "user2"] {
                assert_eq!(
                    account.size(Some(user.as_bytes())),
                    0,
                    "{user}'s calls left"
                );
            }
        }
    }

    fn step(&mut self) {
        let (src, mut data) = match self.rng.below(20) {
            0..=3 => self.new_request(),
            4 => match self.cancel() {
                Some(m) => m,
                None => self.new_request(),
            },
            5..=8 => match self.gateway_answers() {
                Some(m) => m,
                None => self.new_request(),
            },
            9..=10 => match self.caller_in_dialog() {
                Some(m) => m,
                None => self.new_request(),
            },
            11 => match self.gateway_in_dialog() {
                Some(m) => m,
                None => self.new_request(),
            },
            12 => match self.caller_answers() {
                Some(m) => m,
                None => self.new_request(),
            },
            13 | 14 if !self.sent.is_empty() => {
                let i = self.rng.below(self.sent.len());
                self.sent[i].clone()
            }
            15 if self.rng.chance(50) => {
                let t = torture();
                (self.source(), t[self.rng.below(t.len())].clone())
            }
            15 => {
                let n = self.rng.below(200);
                let garbage = (0..n).map(|_| self.rng.next() as u8).collect();
                (self.source(), garbage)
            }
            _ => {
                let d = *self.rng.pick(&[
                    MS,
                    MS * 100,
                    T1,
                    T1 * 4,
                    Duration::from_secs(5),
                    Duration::from_secs(33),
                ]);
                self.h.advance(d);
                self.collect();
                return;
            }
        };
        if self.rng.chance(35) {
            for _ in 0..1 + self.rng.below(3) {
                mutate(&mut self.rng, &mut data);
            }
        }
        self.last = format!("from {src}: {:?}", String::from_utf8_lossy(&data));
        self.last_parsed = SipMsg::parse(&data).is_ok();
        self.h.deliver_bytes(src, &data);
        keep(&mut self.sent, (src, data));
        self.collect();
    }

    /// Where a mangled or stray message comes from.
    fn source(&mut self) -> SocketAddr {
        *self.rng.pick(&[
            caller(),
            caller(),
            gw1(),
            gw2(),
            stranger(),
            "[::1]:5070".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ])
    }

    fn call_id(&mut self) -> String {
        format!("call-{}", self.rng.below(12))
    }

    fn new_request(&mut self) -> (SocketAddr, Vec<u8>) {
        let call_id = self.call_id();
        let branch = format!("z9hG4bK-{}", self.rng.next() % 1000);
        let mut req = invite(&call_id, &branch);
        req.cseq = 1 + self.rng.below(3) as u32;
        if self.rng.chance(25) {
            req.method = *self.rng.pick(&[
                "OPTIONS",
                "MESSAGE",
                "REGISTER",
                "INFO",
                "SUBSCRIBE",
                "NOTIFY",
                "PRACK",
                "UPDATE",
                "REFER",
                "PUBLISH",
                "BYE",
                "ACK",
                "CANCEL",
                "FOO",
            ]);
            req.body.clear();
        }
        if self.rng.chance(20) {
            req.from = format!(
                "<sip:user{}@customer.example>;tag=t{}",
                self.rng.below(3),
                self.rng.below(5)
            );
        }
        if self.rng.chance(10) {
            req.uri = (*self.rng.pick(&[
                "sip:127.0.0.1:5060",
                "sip:+15551234@[::1]",
                "tel:+15551234",
                "sips:+1@127.0.0.1",
                "sip:%41@127.0.0.1",
                "*",
            ]))
            .into();
        }
        if req.method == "INVITE" {
            keep(&mut self.invites, req.clone());
        }
        let src = if self.rng.chance(90) {
            caller()
        } else {
            self.source()
        };
        (src, req.text().into_bytes())
    }

    fn cancel(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let inv = self.invites.get(self.rng.below(self.invites.len()))?;
        Some((caller(), cancel(inv).text().into_bytes()))
    }

    /// A gateway's answer to a request siplb sent it.
    fn gateway_answers(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let i = self.rng.below(self.to_gateways.len());
        let req = self.to_gateways.get(i)?;
        if req.is_request(Method::Ack) {
            return None;
        }
        let code = *self.rng.pick(&[
            100, 180, 183, 183, 200, 200, 200, 202, 302, 401, 407, 408, 480, 486, 487, 500, 503,
            603, 699,
        ]);
        let tag = *self
            .rng
            .pick(&[Some("gw-tag"), Some("gw-tag"), Some("other"), None]);
        let mut resp = response(req, code, tag);
        if code == 401 || code == 407 {
            let name = if code == 401 {
                "WWW-Authenticate"
            } else {
                "Proxy-Authenticate"
            };
            let params = *self.rng.pick(&[
                "realm=\"gw\", nonce=\"n1\"",
                "realm=\"gw\", nonce=\"n2\", qop=\"auth\", algorithm=MD5",
                "realm=\"gw\", nonce=\"n3\", qop=\"auth,auth-int\", stale=true",
                "realm=\"gw\", nonce=\"n4\", algorithm=SHA-256, opaque=\"o\"",
                "realm=\"gw\", nonce=\"n5\", algorithm=MD5-sess, qop=auth",
                "realm=\"gw\", nonce=\"n6\", algorithm=FOO",
                "realm=\"gw\", qop=\"auth-int\"",
                "nonce=\"\", realm=",
                "realm=\"a\\\"b\", nonce=\"n7\", stale=maybe",
            ]);
            let scheme = *self.rng.pick(&["Digest", "Digest", "digest", "Basic", ""]);
            resp = resp.replace(
                "Content-Length",
                &format!("{name}: {scheme} {params}\r\nContent-Length"),
            );
        }
        Some((req.dst, resp.into_bytes()))
    }

    /// The caller's ACK, BYE, re-INVITE or INFO after a 2xx.
    fn caller_in_dialog(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let ok = self.answers.get(self.rng.below(self.answers.len()))?;
        let method = *self
            .rng
            .pick(&["ACK", "ACK", "BYE", "BYE", "INVITE", "INFO", "UPDATE"]);
        let branch = format!("z9hG4bK-dlg-{}", self.rng.next() % 1000);
        let uri = lossy(crate::proxy::forward::first_contact(&ok.msg()));
        if uri.is_empty() {
            return None;
        }
        let from = ok.header(HeaderName::From)?;
        let to = ok.header(HeaderName::To)?;
        let mut routes = ok.headers(HeaderName::RecordRoute);
        routes.reverse();
        let cseq = if method == "ACK" {
            ok.cseq().0
        } else {
            ok.cseq().0 + 1 + self.rng.below(2) as u32
        };
        let req = Req {
            method,
            uri,
            vias: vec![format!("SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport")],
            max_forwards: Some(70),
            routes,
            from,
            to,
            call_id: ok.call_id(),
            cseq,
            extra: String::new(),
            body: String::new(),
            content_length: true,
        };
        Some((caller(), req.text().into_bytes()))
    }

    /// A gateway's BYE (or re-INVITE) in a dialog it answered.
    fn gateway_in_dialog(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let fwd = self
            .to_gateways
            .get(self.rng.below(self.to_gateways.len()))?;
        let uri = lossy(crate::proxy::forward::first_contact(&fwd.msg()));
        if !fwd.is_request(Method::Invite) || uri.is_empty() {
            return None;
        }
        let method = *self.rng.pick(&["BYE", "BYE", "INVITE", "NOTIFY"]);
        let branch = format!("z9hG4bK-gw-{}", self.rng.next() % 1000);
        let req = Req {
            method,
            uri,
            vias: vec![format!("SIP/2.0/UDP {};branch={branch}", fwd.dst)],
            max_forwards: Some(70),
            routes: fwd.headers(HeaderName::RecordRoute),
            from: format!("{};tag=gw-tag", fwd.header(HeaderName::To)?),
            to: fwd.header(HeaderName::From)?,
            call_id: fwd.call_id(),
            cseq: 1 + self.rng.below(4) as u32,
            extra: String::new(),
            body: String::new(),
            content_length: true,
        };
        Some((fwd.dst, req.text().into_bytes()))
    }

    /// The caller's answer to a request siplb sent it.
    fn caller_answers(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let req = self.to_caller.get(self.rng.below(self.to_caller.len()))?;
        if req.is_request(Method::Ack) {
            return None;
        }
        let code = *self.rng.pick(&[200, 200, 481, 408, 500]);
        Some((caller(), response(req, code, None).into_bytes()))
    }

    /// Takes what the shard sent and the records its events make, and checks both.
    fn collect(&mut self) {
        for out in self.h.take() {
            // The error reply to a request that did not parse copies what lines it can (a
            // From with a bare CR in it is left out): it need not parse.
            let best_effort = !self.last_parsed
                && (out.data.starts_with(b"SIP/2.0 4") || out.data.starts_with(b"SIP/2.0 5"));
            // A response passed on (or sent again) carries the Vias below siplb's as the
            // gateway wrote them.
            let relayed = out.data.starts_with(b"SIP/2.0 ");
            let msg = match SipMsg::parse(&out.data) {
                Ok(m) => Some(m),
                Err(_) if best_effort => None,
                Err(crate::sip::ParseError::BadHeader("Via")) if relayed => None,
                Err(e) => panic!(
                    "siplb sent something unparsable ({e}): {out:?}\nafter {}",
                    self.last
                ),
            };
            let Some(msg) = msg else { continue };
            let request = msg.is_request();
            let ok = !request && msg.status().is_some_and(|s| (200..300).contains(&s));
            if out.dst == gw1() || out.dst == gw2() {
                if request {
                    keep(&mut self.to_gateways, out);
                }
            } else if out.dst == caller() {
                if request {
                    keep(&mut self.to_caller, out);
                } else if ok {
                    keep(&mut self.answers, out);
                }
            }
        }
        while let Some(e) = self.h.shard.poll_event() {
            self.acc.on_event(&e);
        }
        self.acc.flush();
        let (mut csv, mut json) = (String::new(), String::new());
        while let Some(r) = self.plane.queues[0].pop() {
            self.records += 1;
            csv.clear();
            json.clear();
            crate::acc::encode::csv_and_json_lines(&r, &mut csv, &mut json);
            assert!(
                csv.ends_with('\n') && json.ends_with('\n') && json.matches('\n').count() == 1,
                "a record is not one JSON line: {json:?}\nafter {}",
                self.last
            );
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
                panic!(
                    "a record's JSON does not parse ({e}): {json}\nafter {}",
                    self.last
                );
            }
        }
    }
}

fn run_seed(seed: u64) -> u64 {
    let mut s = Scenario::new(seed);
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run()));
    if let Err(e) = done {
        eprintln!("fuzz: seed {seed} failed (SIPLB_FUZZ_SEED={seed} runs it alone)");
        std::panic::resume_unwind(e);
    }
    s.records
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn mangled_and_stray_messages_never_break_the_shard_and_leave_nothing_behind() {
    let seeds: Vec<u64> = match env("SIPLB_FUZZ_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("SIPLB_FUZZ_SCENARIOS").unwrap_or(SCENARIOS)).collect(),
    };
    let records: u64 = seeds.iter().map(|&s| run_seed(s)).sum();
    // The scenarios reach deep enough to make records of every kind.
    assert!(records > seeds.len() as u64, "only {records} records");
}
