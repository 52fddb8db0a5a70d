//! Kamailio as a real peer, on both sides of siplb: a record-routing Kamailio 5.6 (`tm`, `rr`,
//! `t_relay`) as siplb's gateway, and as the customer in front of siplb. Calls are set up,
//! held and hung up through both proxies: the ACK and the BYE follow the two Record-Routes.
//! Nets 84 and 92.

use siplb_tests::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// A Kamailio on `listen` that record-routes every initial request to `next` and routes
/// in-dialog requests by their Route headers (loose routing), as a trunk proxy does.
fn kamailio_cfg(listen: &str, next: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
disable_tcp=yes
enable_sctp=no
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=off
listen=udp:{listen}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
modparam("rr", "enable_full_lr", 0)
request_route {{
  if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
  if (has_totag()) {{
    if (loose_route()) {{ t_relay(); exit; }}
    if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    sl_send_reply("404", "Not here");
    exit;
  }}
  if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
  record_route();
  $du = "sip:{next}";
  t_relay();
}}
"#
    )
}

/// A running Kamailio, stopped (SIGTERM to its main process, which ends its children) on
/// drop.
struct Kamailio(Child);

impl Kamailio {
    fn start(dir: &Path, listen: &str, next: &str) -> Kamailio {
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_cfg(listen, next)).expect("write kamailio.cfg");
        let log = std::fs::File::create(dir.join("kamailio.log")).expect("kamailio.log");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            // In the foreground, logging to stderr, no PID file or working-folder change.
            .args(["-DD", "-E", "-w"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kamailio (apt-get install kamailio; `cargo xtask ci` installs it)");
        let k = Kamailio(child);
        assert!(
            try_wait_bound(listen, Duration::from_secs(10)),
            "kamailio did not bind {listen}: {}",
            std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default()
        );
        k
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        stop_child(&mut self.0);
    }
}

/// siplb for `net` whose customer is `customer` and whose one gateway is `gateway`.
fn siplb_config(net: Net, customer: &str, gateway: &str) -> String {
    format!(
        "{head}\n[[customer]]\nname = \"local\"\nsources = [\"{customer}/32\"]\n\n\
         [[gateway_set]]\nname = \"trunk\"\ngateways = [\"{gateway}\"]\n",
        head = config_head(net, 2),
    )
}

/// 20 calls of 300 ms through the chain: every one completes, none is retransmitted into a
/// failure, and siplb saw every dialog end.
fn calls_complete(dir: &Path, siplb: &Siplb, first_hop: &str, net: Net) {
    let stats = Sipp::uac(
        dir,
        "uac",
        first_hop,
        &net.ip(),
        "uac.xml",
        20,
        10,
        &["-d", "300"],
        30,
    );
    assert_eq!((stats.ok(), stats.failed()), (20, 0), "{:?}", stats.fields);
    let s = siplb.stats();
    assert_eq!(s.get("dialog:processed_dialogs"), Some(&20), "{s:?}");
    assert_eq!(s.get("dialog:active_dialogs"), Some(&0), "{s:?}");
}

/// sipp → siplb → Kamailio → sipp: Kamailio is siplb's gateway and adds its own
/// Record-Route under siplb's.
#[test]
fn calls_through_siplb_then_a_record_routing_kamailio() {
    let _g = serial();
    require_sipp();
    let net = Net::new(84);
    let dir = TempDir::new("kamailio-behind");
    let (kamailio_at, uas_at) = (net.gw(1), net.gw(2));
    let _uas = Sipp::uas(&dir.0, "uas", &uas_at, "uas.xml", &[]);
    let _k = Kamailio::start(&dir.0, &kamailio_at, &uas_at);
    let siplb = Siplb::start(BIN, &dir.0, &siplb_config(net, &net.ip(), &kamailio_at));
    calls_complete(&dir.0, &siplb, &net.siplb(), net);
}

/// sipp → Kamailio → siplb → sipp: Kamailio is the customer siplb lets in (by its
/// address) and siplb's Record-Route comes under Kamailio's.
#[test]
fn calls_through_a_record_routing_kamailio_then_siplb() {
    let _g = serial();
    require_sipp();
    let net = Net::new(92);
    let dir = TempDir::new("kamailio-before");
    let (kamailio_at, uas_at) = (format!("{}:5090", net.ip()), net.gw(1));
    let _uas = Sipp::uas(&dir.0, "uas", &uas_at, "uas.xml", &[]);
    let siplb = Siplb::start(BIN, &dir.0, &siplb_config(net, &net.ip(), &uas_at));
    let _k = Kamailio::start(&dir.0, &kamailio_at, &net.siplb());
    calls_complete(&dir.0, &siplb, &kamailio_at, net);
}
