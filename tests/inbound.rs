//! Calls from trunks to customers (issue 13): an INVITE from a gateway to a number in a
//! customer's range reaches that customer's target, a number in no range gets 404, and the
//! customer's account limit applies — the real binary, a sipp caller sending from a gateway's
//! address and a sipp UAS as the customer's PBX.
//!
//! Tests take `serial()` and net 107. The PBX hanging up: `uas_hangup.xml` and
//! `uac_hung_up.xml` in `tests/scenarios`.

use siplb_tests::*;

const BIN: &str = env!("CARGO_BIN_EXE_siplb");

/// The trunk is `<ip>:5070` (where the sipp caller sends from), the customer's PBX
/// `<ip>:5082`; customer `local` owns numbers starting with 1555, 5 calls at once.
fn config(net: Net) -> String {
    format!(
        r#"{head}

[[limits.profile]]
profile = "account"
max = 5

[[customer]]
name = "local"
sources = ["{ip}/32"]
numbers = ["1555"]
targets = ["{pbx}"]

[[gateway_set]]
name = "trunk"
gateways = ["{ip}:5070"]
"#,
        head = config_head(net, 2),
        ip = net.ip(),
        pbx = net.gw(2),
    )
}

#[test]
fn a_trunks_calls_reach_the_customer_that_owns_the_number_within_its_limit() {
    let _g = serial();
    require_sipp();
    let net = Net::new(107);
    let dir = TempDir::new("inbound");
    let mut siplb = Siplb::start(BIN, &dir.0, &config(net));
    let pbx = Sipp::uas(&dir.0, "pbx", &net.gw(2), "uas.xml", &[]);

    // 20 calls from the trunk to 1555… numbers, held 3 s, 10/s: the account has 5 places.
    let inf = repo().join("examples/sipp/accounts.csv");
    let inf = inf.to_str().expect("utf-8");
    let calls = Sipp::uac(
        &dir.0,
        "trunk",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        20,
        10,
        &["-inf", inf, "-d", "3000"],
        60,
    );
    assert_eq!(
        (calls.ok(), calls.failed()),
        (5, 15),
        "5 places for the customer's account: {:?}",
        calls.fields
    );
    assert_eq!(siplb.stat("limits:rejected"), 15);

    // A number nobody owns: 404, and nothing reaches the PBX.
    let nobody = dir.0.join("nobody.csv");
    std::fs::write(&nobody, "SEQUENTIAL\nacct001;4420000001;\n").expect("inf");
    let lost = Sipp::uac(
        &dir.0,
        "nobody",
        &net.siplb(),
        &net.ip(),
        "uac.xml",
        3,
        10,
        &["-inf", nobody.to_str().expect("utf-8")],
        30,
    );
    assert_eq!((lost.ok(), lost.failed()), (0, 3), "{:?}", lost.fields);
    siplb.assert_alive();
    let (pbx_stats, _) = pbx.finish();
    assert_eq!(
        pbx_stats.get("SuccessfulCall(C)"),
        5,
        "{:?}",
        pbx_stats.fields
    );
    // Only the 5 calls let in became dialogs.
    assert_eq!(siplb.stat("dialog:processed_dialogs"), 5);
    siplb.stop();
}

/// The customer's PBX ends the calls from the trunk. It is known by its From domain only (no
/// `sources`), so its address is no customer's source: its BYEs are let in as the calls' own
/// side and reach the trunk, and every dialog ends.
#[test]
fn the_customers_pbx_hangs_up_calls_from_the_trunk() {
    let _g = serial();
    require_sipp();
    let net = Net::new(107);
    let dir = TempDir::new("inbound-hangup");
    let config = config(net).replace(
        &format!("sources = [\"{}/32\"]", net.ip()),
        "domains = [\"pbx.example\"]",
    );
    assert!(config.contains("pbx.example"), "{config}");
    let mut siplb = Siplb::start(BIN, &dir.0, &config);
    let pbx = Sipp::uas(&dir.0, "pbx", &net.gw(2), "uas_hangup.xml", &[]);
    let inf = repo().join("examples/sipp/accounts.csv");
    let calls = Sipp::uac(
        &dir.0,
        "trunk",
        &net.siplb(),
        &net.ip(),
        "uac_hung_up.xml",
        3,
        10,
        &["-inf", inf.to_str().expect("utf-8")],
        60,
    );
    assert_eq!((calls.ok(), calls.failed()), (3, 0), "{:?}", calls.fields);
    let (pbx_stats, _) = pbx.finish();
    assert_eq!(
        pbx_stats.get("SuccessfulCall(C)"),
        3,
        "the PBX's BYEs were answered: {:?}",
        pbx_stats.fields
    );
    assert_eq!(siplb.stat("core:forbidden"), 0);
    assert_eq!(siplb.stat("dialog:active_dialogs"), 0);
    assert_eq!(siplb.stat("dialog:processed_dialogs"), 3);
    siplb.stop();
}
