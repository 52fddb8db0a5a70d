//! The RPC verbs, with Kamailio's names, arguments and output shapes (kamcmd's brace format).

use super::ControlState;
use super::format::Reply;
use crate::proxy::{DialogFilter, DialogInfo, EndTarget, LegInfo};
use crate::worker::ControlJob;
use serde_json::{Value, json};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

pub const STATS_GET_STATISTICS: &str = "stats.get_statistics";
pub const CORE_VERSION: &str = "core.version";
pub const DLG_LIST: &str = "dlg.list";
pub const DLG_STATS_ACTIVE: &str = "dlg.stats_active";
pub const DLG_PROFILE_GET_SIZE: &str = "dlg.profile_get_size";
pub const DLG_PROFILE_LIST: &str = "dlg.profile_list";
/// siplb's own: the highest size a profile (or a value of it) reached.
pub const DLG_PROFILE_GET_MAX: &str = "dlg.profile_get_max";
pub const DLG_END_DLG: &str = "dlg.end_dlg";
pub const DLG_TERMINATE_DLG: &str = "dlg.terminate_dlg";
/// siplb's own: the XDP guard's blocklist (`add <net>`, `del <net>`, `list`).
pub const BLOCKLIST: &str = "blocklist";
/// Kamailio `pike.top`: the sources the flood limit tracks, busiest first.
pub const PIKE_TOP: &str = "pike.top";
/// siplb's own (Kamailio: `corex.debug`): the log level, shown or set.
pub const LOG_LEVEL: &str = "log.level";

/// Every verb, for `help` and the CLI documentation test.
pub const VERBS: &[&str] = &[
    STATS_GET_STATISTICS,
    CORE_VERSION,
    DLG_LIST,
    DLG_STATS_ACTIVE,
    DLG_PROFILE_GET_SIZE,
    DLG_PROFILE_LIST,
    DLG_PROFILE_GET_MAX,
    DLG_END_DLG,
    DLG_TERMINATE_DLG,
    BLOCKLIST,
    PIKE_TOP,
    LOG_LEVEL,
];

/// How long the control thread waits for the workers.
const WORKER_TIMEOUT: Duration = Duration::from_secs(3);

/// Every statistic, summed over workers, in a stable order.
pub fn statistics(state: &ControlState) -> Vec<(&'static str, u64)> {
    let mut all: Vec<(&'static str, u64)> = Vec::new();
    for w in &state.workers {
        let mut i = 0;
        w.stats.each(|name, v| {
            if let Some(e) = all.get_mut(i) {
                if crate::metrics::names::MAX_OF_WORKERS.contains(&name) {
                    e.1 = e.1.max(v);
                } else {
                    e.1 += v;
                }
            } else {
                all.push((name, v));
            }
            i += 1;
        });
    }
    all.extend(state.globals.iter().map(|(n, c)| (*n, c.get())));
    all.sort_by_key(|(n, _)| *n);
    all
}

pub fn run(state: &ControlState, args: &[&str]) -> Result<Reply, String> {
    let Some((&verb, rest)) = args.split_first() else {
        return Err("empty command".into());
    };
    let want = |n: std::ops::RangeInclusive<usize>, usage: &str| {
        if n.contains(&rest.len()) {
            Ok(())
        } else {
            Err(format!("usage: {verb} {usage}"))
        }
    };
    match verb {
        STATS_GET_STATISTICS => {
            let filters: Vec<&str> = if rest.is_empty() {
                vec!["all"]
            } else {
                rest.to_vec()
            };
            let stats = statistics(state);
            let mut out = Vec::new();
            for f in &filters {
                let before = out.len();
                for (name, v) in &stats {
                    let keep = match *f {
                        "all" => true,
                        g if g.ends_with(':') => name.starts_with(g),
                        n => *name == n,
                    };
                    if keep {
                        out.push((name.to_string(), *v));
                    }
                }
                if out.len() == before {
                    return Err(format!("no statistic matches `{f}`"));
                }
            }
            Ok(Reply::Statistics(out))
        }
        CORE_VERSION => Ok(Reply::Scalar(Value::from(format!(
            "siplb {}",
            env!("CARGO_PKG_VERSION")
        )))),
        DLG_PROFILE_GET_SIZE | DLG_PROFILE_GET_MAX => {
            want(1..=2, "<profile> [value]")?;
            let p = state
                .profiles
                .get(rest[0])
                .ok_or_else(|| format!("no profile `{}`", rest[0]))?;
            if rest.len() == 2 && !p.with_value() {
                return Err(format!("profile `{}` has no values", rest[0]));
            }
            if verb == DLG_PROFILE_GET_MAX && rest.len() == 1 && p.with_value() {
                return Err(format!("usage: {verb} {} <value>", rest[0]));
            }
            let value = rest.get(1).map(|v| v.as_bytes());
            Ok(Reply::Scalar(Value::from(
                if verb == DLG_PROFILE_GET_SIZE {
                    p.size(value)
                } else {
                    p.high_water(value)
                },
            )))
        }
        DLG_PROFILE_LIST => {
            want(1..=2, "<profile> [value]")?;
            let id = state
                .profiles
                .id(rest[0])
                .ok_or_else(|| format!("no profile `{}`", rest[0]))?;
            if rest.len() == 2 && !state.profiles.list[id as usize].with_value() {
                return Err(format!("profile `{}` has no values", rest[0]));
            }
            let filter = DialogFilter {
                profile: Some((id, rest.get(1).map(|v| v.as_bytes().into()))),
            };
            Ok(Reply::Structs(
                dialogs(state, filter)?.iter().map(dialog_value).collect(),
            ))
        }
        DLG_LIST => {
            want(0..=0, "")?;
            Ok(Reply::Structs(
                dialogs(state, DialogFilter::default())?
                    .iter()
                    .map(dialog_value)
                    .collect(),
            ))
        }
        DLG_STATS_ACTIVE => {
            want(0..=0, "")?;
            let all = dialogs(state, DialogFilter::default())?;
            let n = |s: u8| all.iter().filter(|d| d.state == s).count();
            Ok(Reply::Struct(json!({
                "starting": n(1),
                "connecting": n(2),
                "answering": n(3),
                "ongoing": n(4),
                "all": all.len(),
            })))
        }
        DLG_END_DLG => {
            want(2..=2, "<h_entry> <h_id>")?;
            let (Ok(h_entry), Ok(h_id)) = (rest[0].parse(), rest[1].parse()) else {
                return Err(format!("usage: {verb} <h_entry> <h_id> (numbers)"));
            };
            end(state, EndTarget::Id { h_entry, h_id })
        }
        DLG_TERMINATE_DLG => {
            want(3..=3, "<callid> <from_tag> <to_tag>")?;
            end(
                state,
                EndTarget::Tags {
                    call_id: rest[0].as_bytes().into(),
                    from_tag: rest[1].as_bytes().into(),
                    to_tag: rest[2].as_bytes().into(),
                },
            )
        }
        BLOCKLIST => {
            let guard = state.guard.get().ok_or("the XDP guard is not attached")?;
            match rest {
                ["list"] => Ok(Reply::Lines(
                    guard.blocked().iter().map(|n| n.to_string()).collect(),
                )),
                ["add", net] => {
                    let net = crate::steering::parse_ipv4_net(net)?;
                    guard.block(net)?;
                    Ok(Reply::Empty)
                }
                ["del", net] => {
                    let net = crate::steering::parse_ipv4_net(net)?;
                    if guard.unblock(net) {
                        Ok(Reply::Empty)
                    } else {
                        Err(format!("{net} is not on the blocklist"))
                    }
                }
                _ => Err(format!(
                    "usage: {verb} add <ip[/prefix]> | del <ip[/prefix]> | list"
                )),
            }
        }
        PIKE_TOP => {
            want(0..=1, "[count]")?;
            let guard = state.guard.get().ok_or("the XDP guard is not attached")?;
            let n = match rest.first() {
                Some(n) => n.parse().map_err(|_| format!("usage: {verb} [count]"))?,
                None => 20,
            };
            Ok(Reply::Structs(
                guard
                    .pike_top(n)
                    .into_iter()
                    .map(|(src, tokens)| json!({"source": src.to_string(), "tokens": tokens}))
                    .collect(),
            ))
        }
        LOG_LEVEL => {
            want(0..=1, "[level]")?;
            let level = match rest.first() {
                Some(l) => crate::logging::set_level(l)?,
                None => crate::logging::level()?,
            };
            Ok(Reply::Scalar(Value::from(level)))
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

/// Posts the job `job(reply)` to every worker and collects their answers, in worker order.
fn ask_workers<T>(
    state: &ControlState,
    job: impl Fn(SyncSender<T>) -> ControlJob,
) -> Result<Vec<T>, String> {
    let mut replies = Vec::new();
    for (i, w) in state.workers.iter().enumerate() {
        let (tx, rx) = sync_channel(1);
        if w.control.push(job(tx)).is_err() {
            return Err(format!("worker {i} is busy"));
        }
        state.wake(i);
        replies.push(rx);
    }
    replies
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            rx.recv_timeout(WORKER_TIMEOUT)
                .map_err(|_| format!("worker {i} did not answer"))
        })
        .collect()
}

/// Asks every worker for its dialogs that match.
fn dialogs(state: &ControlState, filter: DialogFilter) -> Result<Vec<DialogInfo>, String> {
    let per_worker = ask_workers(state, |reply| ControlJob::Dialogs {
        filter: filter.clone(),
        reply,
    })?;
    Ok(per_worker.into_iter().flatten().collect())
}

/// Asks every worker to end the dialog; it is found if one of them had it.
fn end(state: &ControlState, target: EndTarget) -> Result<Reply, String> {
    let found = ask_workers(state, |reply| ControlJob::End {
        target: target.clone(),
        reply,
    })?;
    if found.contains(&true) {
        Ok(Reply::Empty)
    } else {
        Err("dialog not found".into())
    }
}

fn leg_value(l: &LegInfo) -> Value {
    json!({
        "tag": l.tag,
        "contact": l.contact,
        "cseq": l.cseq,
        "route_set": l.route_set,
        "socket": l.socket,
    })
}

/// A dialog with the fields and in the order of Kamailio's `dlg.list`.
fn dialog_value(d: &DialogInfo) -> Value {
    json!({
        "h_entry": d.h_entry,
        "h_id": d.h_id,
        "ref": 1,
        "call-id": d.call_id,
        "from_uri": d.from_uri,
        "to_uri": d.to_uri,
        "state": d.state,
        "start_ts": d.start_ts,
        "init_ts": d.init_ts,
        "end_ts": d.end_ts,
        "duration": d.duration,
        "timeout": d.timeout,
        "lifetime": d.lifetime,
        "dflags": 0,
        "sflags": 0,
        "iflags": 0,
        "caller": leg_value(&d.caller),
        "callee": leg_value(&d.callee),
        "profiles": d.profiles,
        "variables": d.variables.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
    })
}
