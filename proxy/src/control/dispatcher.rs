//! The `dispatcher.*` verbs, with Kamailio's names: the gateway sets with each gateway's
//! state, last probe reply, round trip and calls (`dispatcher.list`), a forced state
//! (`dispatcher.set_state`), and a reload of the gateway sets alone (`dispatcher.reload`).
//! They read and write the gateways' shared atomics; no worker is asked.

use super::ControlState;
use super::format::Reply;
use crate::proxy::gateway::{Gateway, GatewaySet, Gateways};
use crate::proxy::health::Admin;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

pub const DISPATCHER_LIST: &str = "dispatcher.list";
pub const DISPATCHER_SET_STATE: &str = "dispatcher.set_state";
pub const DISPATCHER_RELOAD: &str = "dispatcher.reload";

/// Runs a `dispatcher.*` verb.
pub fn run(state: &ControlState, verb: &str, rest: &[&str]) -> Result<Reply, String> {
    let reloader = state
        .reloader
        .as_ref()
        .ok_or_else(|| "the gateway sets are not available yet".to_string())?;
    match verb {
        DISPATCHER_LIST => {
            if !rest.is_empty() {
                return Err(format!("usage: {verb}"));
            }
            let v = list(&reloader.live().get());
            Ok(Reply::Both {
                text: Box::new(Reply::Lines(vec![kamcmd_text(&v)])),
                json: v,
            })
        }
        DISPATCHER_SET_STATE => {
            let [st, set, addr] = rest else {
                return Err(format!("usage: {verb} <a/i/d>[p] <set> <sip:ip:port>"));
            };
            set_state(&reloader.live().get(), st, set, addr).map(|()| Reply::Empty)
        }
        DISPATCHER_RELOAD => {
            if !rest.is_empty() {
                return Err(format!("usage: {verb}"));
            }
            reloader
                .reload_gateways()
                .map(|r| super::verbs::reloaded(&r))
        }
        other => Err(super::table::unknown(other)),
    }
}

/// Kamailio's `dispatcher.list` shape: `NRSETS`, then per set its `ID` (siplb's set name)
/// and per gateway a `DEST`.
pub fn list(g: &Gateways) -> Value {
    json!({
        "NRSETS": g.sets.len(),
        "RECORDS": g.sets.iter().map(|s| json!({"SET": set_value(s)})).collect::<Vec<_>>(),
    })
}

/// The list as kamcmd prints Kamailio's: `SET:` and `DEST:` repeated inside `RECORDS` and
/// `TARGETS` (which JSON, with one value per key, writes as arrays).
fn kamcmd_text(v: &Value) -> String {
    use std::fmt::Write;
    let mut out = format!("{{\n\tNRSETS: {}\n\tRECORDS: {{\n", v["NRSETS"]);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        other => other.to_string(),
    };
    for set in v["RECORDS"].as_array().into_iter().flatten() {
        let set = &set["SET"];
        let _ = write!(
            out,
            "\t\tSET: {{\n\t\t\tID: {}\n\t\t\tTARGETS: {{\n",
            text(&set["ID"])
        );
        for dest in set["TARGETS"].as_array().into_iter().flatten() {
            out.push_str("\t\t\t\tDEST: {\n");
            for (k, v) in dest["DEST"].as_object().into_iter().flatten() {
                let _ = writeln!(out, "\t\t\t\t\t{k}: {}", text(v));
            }
            out.push_str("\t\t\t\t}\n");
        }
        out.push_str("\t\t\t}\n\t\t}\n");
    }
    out.push_str("\t}\n}");
    out
}

fn set_value(s: &GatewaySet) -> Value {
    json!({
        "ID": s.name,
        "TARGETS": s.gateways.iter().map(|g| json!({"DEST": dest_value(g)})).collect::<Vec<_>>(),
    })
}

/// One gateway: URI, FLAGS (`AP`, `TP`, `IP`, `DX` …), PRIORITY, WEIGHT, calls now and at
/// most, the last probe's reply (`none`, `timeout` or the code), its round trip in ms, and
/// probes sent and failed.
fn dest_value(g: &Gateway) -> Value {
    let h = &g.state.health;
    let last = match h.last_reply() {
        None => Value::from("none"),
        Some(None) => Value::from("timeout"),
        Some(Some(code)) => Value::from(code),
    };
    let (sent, failed) = h.probes();
    json!({
        "URI": format!("sip:{}", g.target.addr),
        "FLAGS": h.flag_text(),
        "PRIORITY": g.priority,
        "WEIGHT": g.weight,
        "CALLS": g.state.calls.load(Ordering::Relaxed),
        "MAX_CALLS": g.max_calls.map_or(Value::Null, Value::from),
        "LAST_REPLY": last,
        "RTT_MS": h.rtt().map_or(Value::Null, |d| Value::from(d.as_micros() as f64 / 1000.0)),
        "PROBES_SENT": sent,
        "PROBES_FAILED": failed,
    })
}

/// Forces the state of the gateway `addr` (`sip:ip:port` or `ip:port`) of set `set` (its
/// name, or its number from 1): `a` active, `i` inactive, `d` disabled, with `p` probing.
pub fn set_state(g: &Gateways, st: &str, set: &str, addr: &str) -> Result<(), String> {
    let (admin, probing) = Admin::parse(st).ok_or_else(|| {
        format!("`{st}` is not a state: a (active), i (inactive) or d (disabled), with p to probe")
    })?;
    let s = g
        .sets
        .iter()
        .find(|s| s.name == set)
        .or_else(|| {
            set.parse::<usize>()
                .ok()
                .and_then(|n| g.sets.get(n.checked_sub(1)?))
        })
        .ok_or_else(|| format!("no gateway set `{set}`"))?;
    let a: SocketAddr = addr
        .strip_prefix("sip:")
        .unwrap_or(addr)
        .parse()
        .map_err(|_| format!("`{addr}` is not sip:ip:port"))?;
    let gw = s
        .gateways
        .iter()
        .find(|x| x.target.addr == a)
        .ok_or_else(|| format!("no gateway {addr} in set `{}`", s.name))?;
    if probing && s.probe.is_none() {
        return Err(format!(
            "gateway set `{}` is not probed (no probe_interval_ms)",
            s.name
        ));
    }
    let was = gw.state.health.flag_text();
    gw.state.health.force(admin, probing);
    tracing::info!(
        target: "siplb::dispatcher",
        gateway = %a,
        "dispatcher.set_state {st}: gateway of set `{}` forced from {was} to {}",
        s.name,
        gw.state.health.flag_text()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ProbeConfig;
    use std::time::Duration;

    fn gateways() -> Gateways {
        let mut set: GatewaySet = vec![
            "127.0.0.1:5081".parse().unwrap(),
            "127.0.0.1:5082".parse().unwrap(),
        ]
        .into();
        set.name = "trunk".into();
        set.probe = Some(ProbeConfig::every(Duration::from_secs(2)));
        for g in &set.gateways {
            g.state.health.set_probing(true);
        }
        Gateways {
            sets: vec![set],
            routes: Vec::new(),
        }
    }

    #[test]
    fn the_list_has_kamailios_shape_and_each_gateways_state() {
        let g = gateways();
        set_state(&g, "ip", "trunk", "sip:127.0.0.1:5082").unwrap();
        let text = kamcmd_text(&list(&g));
        assert!(
            text.starts_with("{\n\tNRSETS: 1\n\tRECORDS: {\n\t\tSET: {\n\t\t\tID: trunk\n"),
            "{text}"
        );
        assert!(
            text.contains("\t\t\tTARGETS: {\n\t\t\t\tDEST: {\n\t\t\t\t\tURI: sip:127.0.0.1:5081\n\t\t\t\t\tFLAGS: AP\n"),
            "{text}"
        );
        assert!(
            text.contains("URI: sip:127.0.0.1:5082\n\t\t\t\t\tFLAGS: IP\n"),
            "{text}"
        );
        assert!(text.ends_with("\t\t\t}\n\t\t}\n\t}\n}"), "{text}");
        assert!(text.contains("LAST_REPLY: none\n"), "{text}");
        let v: Value = serde_json::from_str(&Reply::Struct(list(&g)).render(true)).unwrap();
        let dest = &v["RECORDS"][0]["SET"]["TARGETS"][1]["DEST"];
        assert_eq!(dest["FLAGS"], "IP");
        assert_eq!(dest["CALLS"], 0);
    }

    #[test]
    fn set_state_finds_the_gateway_by_set_name_or_number_and_checks_its_arguments() {
        let g = gateways();
        set_state(&g, "d", "1", "127.0.0.1:5081").unwrap();
        assert!(!g.sets[0].gateways[0].usable());
        set_state(&g, "a", "trunk", "sip:127.0.0.1:5081").unwrap();
        assert!(g.sets[0].gateways[0].usable());
        assert_eq!(g.sets[0].gateways[0].state.health.flag_text(), "AX");
        for (st, set, addr, want) in [
            ("x", "trunk", "sip:127.0.0.1:5081", "not a state"),
            ("a", "other", "sip:127.0.0.1:5081", "no gateway set"),
            ("a", "2", "sip:127.0.0.1:5081", "no gateway set"),
            ("a", "trunk", "sip:127.0.0.1:5089", "no gateway"),
            ("a", "trunk", "sip:host", "not sip:ip:port"),
        ] {
            let e = set_state(&g, st, set, addr).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let mut unprobed = gateways();
        unprobed.sets[0].probe = None;
        let e = set_state(&unprobed, "ap", "trunk", "sip:127.0.0.1:5081").unwrap_err();
        assert!(e.contains("not probed"), "{e}");
    }
}
