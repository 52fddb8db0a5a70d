use super::*;
use crate::proxy::{AccountKey, DialogTimers, LimitReply};
use crate::sip::Method;

pub(super) fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/siplb/t.toml"), src)
}

pub(super) const MIN: &str = r#"
[listen]
sip = ["127.0.0.1:5060"]

[[customer]]
name = "local"
sources = ["127.0.0.1/32"]

[[gateway_set]]
name = "trunk"
gateways = ["127.0.0.1:5081", "127.0.0.1:5082"]
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MIN).unwrap();
    assert_eq!(c.listen, "127.0.0.1:5060".parse().unwrap());
    assert_eq!(c.proxy.routing.gateways.len(), 2);
    assert_eq!(c.proxy.timers.t1, Duration::from_millis(DEFAULT_T1_MS));
    assert_eq!(c.queue_per_worker, DEFAULT_QUEUE_PER_WORKER);
    assert_eq!(c.control_socket, Path::new("/etc/siplb/siplb.ctl"));
    assert_eq!(c.steering, SteeringMode::Auto);
}

#[test]
fn unknown_key_names_key_and_line() {
    let src = format!("{MIN}\n[timers]\nt1_ms = 100\nbogus = 3\n");
    let e = parse(&src).unwrap_err().to_string();
    assert!(
        e.starts_with("/etc/siplb/t.toml:15: `timers.bogus`: unknown field `bogus`"),
        "{e}"
    );
}

#[test]
fn a_value_of_the_wrong_type_names_the_dotted_key_and_what_it_takes() {
    let cases = [
        (
            "[timers]\nt1_ms = \"fast\"",
            "/etc/siplb/t.toml:14: `timers.t1_ms`: invalid type: string \"fast\", expected a whole number (0 or more)",
        ),
        (
            "[timers]\nt1_ms = -5",
            "/etc/siplb/t.toml:14: `timers.t1_ms`: invalid value: integer `-5`, expected a whole number (0 or more)",
        ),
        (
            "[acc]\ncdrs = \"yes\" # on",
            "/etc/siplb/t.toml:14: `acc.cdrs`: invalid type: string \"yes\", expected true or false",
        ),
    ];
    for (body, want) in cases {
        let e = parse(&format!("{MIN}\n{body}\n")).unwrap_err().to_string();
        assert_eq!(e, want, "{body}");
    }
    // A secret's value is never shown, not even when it has the wrong type.
    let e = parse(&MIN.replace(
        "gateways = [\"127.0.0.1:5081\", \"127.0.0.1:5082\"]",
        "[[gateway_set.gateway]]\naddress = \"127.0.0.1:5081\"\nuser = \"u\"\npassword = 98765432",
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `gateway_set.gateway.password`: invalid value (not shown), expected a string"
    );
    let e = parse(&format!("node = 5\n{MIN}")).unwrap_err().to_string();
    assert_eq!(
        e,
        "/etc/siplb/t.toml:1: `node`: invalid type: integer `5`, expected a string"
    );
}

#[test]
fn bad_cidr_names_line_and_key() {
    let src = MIN.replace("127.0.0.1/32", "127.0.0.1/40");
    let e = parse(&src).unwrap_err().to_string();
    assert_eq!(
        e,
        "/etc/siplb/t.toml:7: `customer.sources`: bad prefix length in `127.0.0.1/40`"
    );
}

/// The dialog article's profiles and the per-account limit, for the error tests below.
const DIALOG: &str = r#"
[dialog]
profiles_no_value = ["total", "local", "domestic", "international"]
profiles_with_value = ["user"]

[[dialog.rule]]
profile = "total"

[[dialog.rule]]
profile = "international"
dialed_prefix = "00"
stop = true

[[dialog.rule]]
profile = "user"
value_from = "from_user"

[[limits.profile]]
profile = "account"
max = 5
"#;

fn dialog_error(from: &str, to: &str) -> String {
    let src = format!("{MIN}{}", DIALOG.replacen(from, to, 1));
    parse(&src).unwrap_err().to_string()
}

#[test]
fn dialog_profiles_rules_and_limits_are_read() {
    let c = parse(&format!("{MIN}{DIALOG}")).unwrap();
    let p = &c.proxy.profiles;
    let names: Vec<&str> = p.list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "total",
            "local",
            "domestic",
            "international",
            "user",
            "account"
        ]
    );
    assert_eq!(c.proxy.rules.len(), 3);
    assert_eq!(c.proxy.limit_reply, LimitReply::default());
    assert_eq!(c.proxy.dialog, DialogTimers::default());
}

#[test]
fn each_dialog_misconfiguration_names_file_line_and_key() {
    let cases = [
        (
            ("profile = \"international\"", "profile = \"intl\""),
            "/etc/siplb/t.toml:21: `dialog.rule.profile`: profile `intl` is not declared in dialog.profiles_no_value or dialog.profiles_with_value",
        ),
        (
            (
                "profile = \"total\"\n",
                "profile = \"total\"\nvalue = \"x\"\n",
            ),
            "/etc/siplb/t.toml:19: `dialog.rule.value`: profile `total` is declared in dialog.profiles_no_value: a rule for it takes no value",
        ),
        (
            ("value_from = \"from_user\"", "dialed_prefix = \"1\""),
            "/etc/siplb/t.toml:26: `dialog.rule.profile`: profile `user` is declared in dialog.profiles_with_value: a rule for it needs `value` or `value_from`",
        ),
        (
            ("value_from = \"from_user\"", "value_from = \"from_uri\""),
            "/etc/siplb/t.toml:27: `dialog.rule.value_from`: `from_uri` is not one of dialed, from_user, from_domain, to_user, source, customer, account",
        ),
        (
            ("dialed_prefix = \"00\"", "dialed_regex = \"^(00\""),
            "/etc/siplb/t.toml:22: `dialog.rule.dialed_regex`: `^(00` is not a regular expression: error: unclosed group",
        ),
        (
            (
                "profile = \"account\"\nmax = 5",
                "profile = \"total\"\nvalue = \"x\"\nmax = 5",
            ),
            "/etc/siplb/t.toml:31: `limits.profile.value`: profile `total` is declared in dialog.profiles_no_value: it has no values",
        ),
        (
            (
                "profile = \"account\"\nmax = 5",
                "profile = \"acount\"\nmax = 5",
            ),
            "/etc/siplb/t.toml:30: `limits.profile.profile`: profile `acount` is not declared in dialog.profiles_no_value or dialog.profiles_with_value",
        ),
        (
            ("[\"total\", ", "[\"total\", \"account\", "),
            "/etc/siplb/t.toml:14: `dialog.profiles_no_value`: profile `account` has a value (the account): declare it in dialog.profiles_with_value or not at all",
        ),
        (
            ("[\"user\"]", "[\"user\", \"total\"]"),
            "/etc/siplb/t.toml:15: `dialog.profiles_with_value`: profile `total` is declared twice",
        ),
        (
            ("max = 5", "max = \"five\""),
            "/etc/siplb/t.toml:31: `limits.profile.max`: invalid type: string \"five\", expected a whole number (0 or more)",
        ),
    ];
    for ((from, to), want) in cases {
        assert_eq!(dialog_error(from, to), want, "{to}");
    }
    let var = |body: &str| {
        parse(&format!(
            "{MIN}\n[[dialog.var]]\nname = \"Trunk\"\n{body}\n"
        ))
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        var("value = 1"),
        "/etc/siplb/t.toml:15: `dialog.var.value`: variable `Trunk` = 1: dialog variables hold strings only (as Kamailio's $dlg_var); write value = \"1\""
    );
    assert_eq!(
        var("value = \"a\"\nat = \"answer\""),
        "/etc/siplb/t.toml:16: `dialog.var.at`: `answer` is not one of invite, start, end"
    );
    assert_eq!(
        var("value_from = \"from_user\"\nat = \"end\""),
        "/etc/siplb/t.toml:15: `dialog.var.value_from`: variable `Trunk`: `value_from` reads the INVITE, so `at` must be `invite`"
    );
    assert_eq!(
        var(""),
        "/etc/siplb/t.toml:14: `dialog.var`: variable `Trunk` needs `value` or `value_from`"
    );
    let e = parse(&format!(
        "{MIN}\n[[dialog.var]]\nname = \"BillSec\"\nvalue = \"1\"\n"
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/siplb/t.toml:14: `dialog.var.name`: `BillSec` is built in (set by siplb itself)"
    );
    let e = parse(&format!("{MIN}[events]\nhttp_post = \"https://x/\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/siplb/t.toml:13: `events.http_post`: `https://x/` is not an http:// URL"
    );
    let e = parse(&format!("{MIN}[limits]\nreply_code = 200\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/siplb/t.toml:13: `limits.reply_code`: 200 is not a final error code (400 to 699)"
    );
}

/// The keys serde accepts in one section, read off its "unknown field" error.
fn accepted_keys(src: &str) -> Vec<String> {
    let e = toml::from_str::<file::FileConfig>(src).expect_err("zz_bogus is unknown");
    let m = e.message().to_string();
    let after = m.split("expected").nth(1).unwrap_or_else(|| panic!("{m}"));
    after
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

#[test]
fn every_key_is_documented() {
    let doc = include_str!("../../../docs/CONFIG.md");
    let mut missing = Vec::new();
    let tables = [
        "workers", "steering", "control", "metrics", "timers", "limits", "dialog", "events", "log",
        "debug", "acc", "cluster",
    ];
    for t in tables {
        for k in accepted_keys(&format!("{MIN}\n[{t}]\nzz_bogus = 1\n")) {
            if !doc.contains(&format!("`{t}.{k}`")) {
                missing.push(format!("{t}.{k}"));
            }
        }
    }
    let inline = [
        (
            "listen",
            "sip = [\"127.0.0.1:5060\"]\n",
            "sip = [\"127.0.0.1:5060\"]\nzz_bogus = 1\n",
        ),
        (
            "customer",
            "name = \"local\"\n",
            "name = \"local\"\nzz_bogus = 1\n",
        ),
        (
            "gateway_set",
            "name = \"trunk\"\n",
            "name = \"trunk\"\nzz_bogus = 1\n",
        ),
        (
            "limits.profile",
            "[[customer]]",
            "[[limits.profile]]\nprofile = \"x\"\nmax = 1\nzz_bogus = 1\n[[customer]]",
        ),
        (
            "dialog.rule",
            "[[customer]]",
            "[[dialog.rule]]\nprofile = \"x\"\nzz_bogus = 1\n[[customer]]",
        ),
        (
            "gateway_set.gateway",
            "name = \"trunk\"\n",
            "name = \"trunk\"\n[[gateway_set.gateway]]\naddress = \"127.0.0.1:5090\"\nzz_bogus = 1\n",
        ),
        (
            "route",
            "[[customer]]",
            "[[route]]\ngateway_set = \"trunk\"\nzz_bogus = 1\n[[customer]]",
        ),
        (
            "acc.rule",
            "[[customer]]",
            "[[acc.rule]]\nmethod = \"BYE\"\ncomment = \"x\"\nzz_bogus = 1\n[[customer]]",
        ),
        (
            "dialog.var",
            "[[customer]]",
            "[[dialog.var]]\nname = \"x\"\nzz_bogus = 1\n[[customer]]",
        ),
    ];
    for (t, from, to) in inline {
        for k in accepted_keys(&MIN.replacen(from, to, 1)) {
            if !doc.contains(&format!("`{t}.{k}`")) {
                missing.push(format!("{t}.{k}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from docs/CONFIG.md: {missing:?}"
    );
}

#[test]
fn shipped_limits_example_is_valid() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/limits.toml"
    ));
    let c = Config::load(path).unwrap();
    let p = &c.proxy.profiles;
    for name in ["total", "local", "domestic", "international", "account"] {
        assert!(p.get(name).is_some(), "{name}");
    }
    assert_eq!(
        c.proxy.routing.customers[0].account_key,
        AccountKey::FromUser
    );
    assert_eq!(c.proxy.rules.len(), 4);
}

#[test]
fn shipped_example_config_is_valid() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/siplb.toml"
    ));
    let c = Config::load(path).unwrap();
    assert_eq!(c.listen, "127.0.0.1:5060".parse().unwrap());
    assert_eq!(c.proxy.routing.customers[0].name, "local");
    let gws: Vec<String> = c
        .proxy
        .routing
        .gateways
        .addresses()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(gws, ["127.0.0.1:5081", "127.0.0.1:5082"]);
}

#[test]
fn workers_io_names_a_data_path_and_af_xdp_needs_the_xdp_program() {
    let c = parse(MIN).unwrap();
    assert_eq!(c.io, crate::config::IoPath::IoUring);
    let c = parse(&format!("{MIN}\n[workers]\nio = \"auto\"\n")).unwrap();
    assert_eq!(c.io, crate::config::IoPath::Auto);
    let c = parse(&format!("{MIN}\n[workers]\nio = \"af_xdp\"\n")).unwrap();
    assert_eq!(c.io, crate::config::IoPath::AfXdp);
    let e = parse(&format!("{MIN}\n[workers]\nio = \"dpdk\"\n"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/siplb/t.toml:14: `workers.io`: `dpdk` is not one of io_uring, af_xdp, auto"
    );
    let e = parse(&format!(
        "{MIN}\n[workers]\nio = \"af_xdp\"\n\n[steering]\nxdp_mode = \"off\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("/etc/siplb/t.toml:14: `workers.io`: `af_xdp` needs"),
        "{e}"
    );
}

#[test]
fn a_missing_file_says_its_os_error_once() {
    use std::error::Error;
    let e = Config::load(Path::new("/nonexistent/siplb.toml")).unwrap_err();
    assert!(e.source().is_none(), "the OS error is in the message only");
    assert_eq!(
        e.to_string(),
        "/nonexistent/siplb.toml: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn log_section_is_read_and_checked() {
    let c = parse(MIN).unwrap();
    assert_eq!(c.log, crate::logging::LogConfig::default());
    assert!(c.proxy.emit.failures, "call lines by default");
    let src = format!(
        "{MIN}\n[log]\nlevel = \"warn,siplb::call=info\"\nformat = \"json\"\ncalls_per_second = 0\n"
    );
    let c = parse(&src).unwrap();
    assert_eq!(c.log.level, "warn,siplb::call=info");
    assert_eq!(c.log.format, crate::logging::LogFormat::Json);
    assert!(!c.proxy.emit.failures, "no call lines, no events for them");
    let e = parse(&format!("{MIN}\n[log]\nlevel = \"inof\"\n")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/etc/siplb/t.toml:14: `log.level`: `inof` is not a level"),
        "{e}"
    );
    let e = parse(&format!("{MIN}\n[log]\nformat = \"xml\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/siplb/t.toml:14: `log.format`: `xml` is not one of text, json"
    );
}

#[test]
fn shipped_acc_example_is_kamailios_default_accounting() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/acc.toml"));
    let c = Config::load(path).unwrap();
    let acc = c.acc.expect("[acc] is on");
    assert_eq!(c.node, "example");
    assert!(acc.flags.contains(Method::Invite) && !acc.flags.contains(Method::Bye));
    assert!(acc.missed_flags.contains(Method::Invite));
    assert!(acc.cdrs && acc.sinks.files && !acc.sinks.log);
    assert_eq!(acc.rules.len(), 1);
    assert_eq!(
        (acc.rules[0].method, acc.rules[0].comment.as_str()),
        (Method::Bye, "210 Bye received")
    );
    assert_eq!(acc.sync_interval, Duration::from_millis(10));
    assert!(c.proxy.emit.transactions && c.proxy.emit.dialogs && c.proxy.emit.requests);
}

#[test]
fn shipped_trunks_example_authenticates_and_fails_over() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/trunks.toml"
    ));
    let c = Config::load(path).unwrap();
    let g = &c.proxy.routing.gateways;
    assert_eq!(g.sets.len(), 1);
    let set = &g.sets[0];
    assert_eq!(set.name, "trunk");
    assert!(set.failover);
    assert_eq!(set.failover_codes, [500, 502, 503]);
    assert_eq!(set.failover_timeout, Some(Duration::from_millis(5000)));
    let probe = set.probe.as_ref().expect("probing");
    assert_eq!(probe.interval, Duration::from_millis(2000));
    assert_eq!(probe.timeout, Duration::from_millis(1000));
    assert_eq!(
        (probe.thresholds.down_after, probe.thresholds.up_after),
        (2, 1)
    );
    let addrs: Vec<String> = set
        .gateways
        .iter()
        .map(|gw| gw.target.addr.to_string())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:5081", "127.0.0.1:5082"]);
    for gw in &set.gateways {
        let cred = gw.credentials.as_ref().expect("credentials");
        assert_eq!(cred.user, "siplb");
        assert!(
            cred.secret == crate::proxy::gateway::Secret::Password("trunk-secret".into()),
            "{:?}",
            cred.secret
        );
    }
}

#[test]
fn without_acc_nothing_is_recorded_and_the_node_is_the_host_name() {
    let c = parse(MIN).unwrap();
    assert!(c.acc.is_none());
    assert!(!c.proxy.emit.transactions && !c.proxy.emit.requests);
    assert!(!c.node.is_empty());
}

#[test]
fn acc_mistakes_name_their_key_and_line() {
    let acc = |body: &str| parse(&format!("node = \"n1\"\n{MIN}\n[acc]\n{body}\n"));
    let cases = [
        (
            "flags = [\"INVITE\"]\nfailed_flags = [\"BYE\"]",
            "`acc.failed_flags`",
        ),
        ("flags = [\"INVIT\"]", "`acc.flags`"),
        (
            "flags = [\"INVITE\", \"CANCEL\"]",
            "`acc.flags`: `CANCEL` cannot be recorded by flag",
        ),
        (
            "flags = [\"ack\"]",
            "`acc.flags`: `ack` cannot be recorded by flag",
        ),
        ("missed_flags = [\"BYE\"]", "`acc.missed_flags`"),
        ("sinks = [\"syslog\"]", "`acc.sinks`"),
        (
            "sinks = [\"postgres\"]",
            "`acc.sinks`: `postgres` needs acc.postgres",
        ),
        ("formats = [\"xml\"]", "`acc.formats`"),
        ("sync_interval_ms = 0", "`acc.sync_interval_ms`"),
        ("queue = 1", "`acc.queue`"),
        (
            "flags = [\"BYE\"]\n[[acc.rule]]\nmethod = \"BYE\"\ncomment = \"210 Bye received\"",
            "`acc.rule.method`: BYE is recorded by acc.flags already",
        ),
        (
            "[[acc.rule]]\nmethod = \"BYE\"\ncomment = \"x\"\ntable = \"Bad-Name\"",
            "`acc.rule.table`",
        ),
        ("bogus = 1", "unknown field `bogus`"),
        ("dir = \"\"", "`acc.dir`: \"\" is not a folder name"),
        (
            "dir = \"a\\u0000b\"",
            "`acc.dir`: \"a\\0b\" is not a folder name (a NUL byte)",
        ),
    ];
    for (body, want) in cases {
        let e = acc(body).unwrap_err().to_string();
        assert!(e.contains(want), "{body:?}: {e}");
        assert!(
            e.starts_with("/etc/siplb/t.toml:"),
            "{body:?}: no line: {e}"
        );
    }
    let e = parse(&format!("node = \"a b\"\n{MIN}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`node`"), "{e}");
    let e = parse(&format!("node = \"nodé\"\n{MIN}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("printable ASCII characters"), "{e}");
}

#[test]
fn cluster_keys_resolve_and_their_mistakes_name_key_and_line() {
    use crate::cluster::task::OnRedisDown;
    let c = parse(&format!(
        "node = \"edge-1\"\n{MIN}\n[cluster]\nredis = [\"redis://10.0.0.5:6379\"]\n"
    ))
    .unwrap();
    let k = c.cluster.expect("[cluster]");
    assert_eq!(k.node, "edge-1");
    assert_eq!(k.redis, ["redis://10.0.0.5:6379"]);
    assert_eq!(k.lease, std::time::Duration::from_secs(10));
    assert_eq!(k.on_redis_down, OnRedisDown::Closed);
    assert_eq!(c.proxy.lease_wait, k.wait);
    assert!(parse(MIN).unwrap().cluster.is_none());
    let c = parse(&format!("{MIN}\n[cluster]\nredis = [\"redis://x\"]\n")).unwrap();
    assert_eq!(
        c.cluster.unwrap().node,
        format!("{}@{}", c.node, c.listen),
        "without a node name: the host and the address"
    );
    let cluster = |body: &str| parse(&format!("{MIN}\n[cluster]\n{body}\n"));
    let ok = cluster(
        "redis = [\"redis://a:1\", \"redis://b:1\"]\non_redis_down = \"open\"\nopen_share = 0.25",
    );
    assert_eq!(
        ok.unwrap().cluster.unwrap().on_redis_down,
        OnRedisDown::Open(0.25)
    );
    for (body, want) in [
        ("lease_ms = 1000", "`cluster.redis`: at least one Redis URL"),
        (
            "redis = [\"http://x\"]",
            "`cluster.redis`: `http://x` is not a Redis URL",
        ),
        (
            "redis = [\"redis://x\"]\nlease_ms = 5",
            "`cluster.lease_ms`",
        ),
        ("redis = [\"redis://x\"]\nblock = 0", "`cluster.block`"),
        (
            "redis = [\"redis://x\"]\non_redis_down = \"maybe\"",
            "`cluster.on_redis_down`",
        ),
        (
            "redis = [\"redis://x\"]\nopen_share = 1.5",
            "`cluster.open_share`",
        ),
        ("redis = [\"redis://x\"]\nwait_ms = 0", "`cluster.wait_ms`"),
        (
            "redis = [\"redis://x\"]\nbogus = 1",
            "unknown field `bogus`",
        ),
    ] {
        let e = cluster(body).unwrap_err().to_string();
        assert!(e.contains(want), "{body:?}: {e}");
        assert!(
            e.starts_with("/etc/siplb/t.toml:1"),
            "{body:?}: no line: {e}"
        );
    }
}

#[test]
fn acc_paths_resolve_from_the_config_folder() {
    let c = parse(&format!("{MIN}\n[acc]\ndir = \"cdr\"\ncdrs = true\n")).unwrap();
    assert_eq!(c.acc.unwrap().dir, Path::new("/etc/siplb/cdr"));
}

#[test]
fn customer_numbers_and_targets_are_read_and_checked() {
    let with = |lines: &str| {
        parse(&MIN.replace(
            "name = \"local\"\n",
            &format!("name = \"local\"\n{lines}\n"),
        ))
    };
    let c = with(
        "numbers = [\"+1555\", \"442070000000-442070009999\"]\ntargets = [\"127.0.0.1:5090\"]",
    )
    .unwrap();
    assert!(c.proxy.routing.takes_inbound());
    let (who, target) = c.proxy.routing.inbound(b"442070000001", b"c").unwrap();
    assert_eq!((who, target.addr), (0, "127.0.0.1:5090".parse().unwrap()));
    for (lines, want) in [
        ("numbers = [\"+1555\"]", "`customer.targets`"),
        (
            "numbers = [\"15-2\"]\ntargets = [\"127.0.0.1:5090\"]",
            "same length",
        ),
        (
            "numbers = [\"abc\"]\ntargets = [\"127.0.0.1:5090\"]",
            "`customer.numbers`",
        ),
        (
            "numbers = [\"1\"]\ntargets = [\"nowhere\"]",
            "`customer.targets`",
        ),
    ] {
        let e = with(lines).unwrap_err().to_string();
        assert!(e.contains(want), "{lines}: {e}");
    }
}

/// `siplb ctl` finds the socket of a file being edited: one that fails the checks, or that is
/// not even TOML (an unclosed table header), read line by line then.
#[test]
fn the_control_socket_is_found_in_a_file_that_does_not_parse() {
    let dir = std::env::temp_dir().join(format!("siplb-ctl-socket-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("siplb.toml");
    let socket = |text: &str| {
        std::fs::write(&path, text).unwrap();
        Config::control_socket_of(&path).unwrap()
    };
    let with = format!("{MIN}\n[control] # ours\nsocket = \"run/ctl.sock\"\n");
    assert_eq!(socket(&with), dir.join("run/ctl.sock"));
    let broken = format!("{with}\n[[customer]\nname = \"a\"\n");
    assert!(parse(&broken).is_err());
    assert_eq!(socket(&broken), dir.join("run/ctl.sock"));
    let dotted = format!("control.socket = '/x/ctl.sock'\n{MIN}\n[[customer]\n");
    assert_eq!(socket(&dotted), Path::new("/x/ctl.sock"));
    // Another table's `socket`, or none at all: the default, beside the file.
    let other = format!("{MIN}\n[metrics]\nsocket = \"no\"\n[[customer]\n");
    assert_eq!(socket(&other), dir.join(DEFAULT_CONTROL_SOCKET));
    std::fs::remove_dir_all(&dir).unwrap();
}
