//! The RPC verbs, with Kamailio's names and output shapes.

use super::ControlState;
use std::fmt::Write;

pub const STATS_GET_STATISTICS: &str = "stats.get_statistics";
pub const CORE_VERSION: &str = "core.version";

/// Every statistic, summed over workers, in a stable order.
pub fn statistics(state: &ControlState) -> Vec<(&'static str, u64)> {
    let mut all: Vec<(&'static str, u64)> = Vec::new();
    for s in &state.stats {
        let mut i = 0;
        s.each(|name, v| {
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
    all.extend(state.globals.iter().copied());
    all.sort_by_key(|(n, _)| *n);
    all
}

pub fn run(state: &ControlState, args: &[&str]) -> Result<String, String> {
    let Some((&verb, rest)) = args.split_first() else {
        return Err("empty command".into());
    };
    match verb {
        STATS_GET_STATISTICS => {
            let mut out = String::new();
            let filters: Vec<&str> = if rest.is_empty() {
                vec!["all"]
            } else {
                rest.to_vec()
            };
            let stats = statistics(state);
            for f in &filters {
                let before = out.len();
                for (name, v) in &stats {
                    let keep = match *f {
                        "all" => true,
                        g if g.ends_with(':') => name.starts_with(g),
                        n => *name == n,
                    };
                    if keep {
                        let _ = writeln!(out, "{name} = {v}");
                    }
                }
                if out.len() == before {
                    return Err(format!("no statistic matches `{f}`"));
                }
            }
            Ok(out)
        }
        CORE_VERSION => Ok(format!("siplb {}\n", env!("CARGO_PKG_VERSION"))),
        other => Err(format!("unknown command `{other}`")),
    }
}
