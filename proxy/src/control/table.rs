//! The one table of control verbs: name, arguments, one-line description. It drives
//! `siplb ctl --help`, `system.listMethods`, `system.methodHelp`, the close matches offered
//! for an unknown verb, and (a test checks it) docs/CLI.md.

use super::dispatcher::*;
use super::verbs::*;

/// One control verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verb {
    pub name: &'static str,
    /// Its arguments as `siplb ctl` takes them (`""`: none).
    pub args: &'static str,
    /// One line: what it does or prints.
    pub help: &'static str,
}

const fn verb(name: &'static str, args: &'static str, help: &'static str) -> Verb {
    Verb { name, args, help }
}

/// Every verb the control socket answers, in the order `--help` lists them.
pub const VERBS: &[Verb] = &[
    verb(
        SYSTEM_LIST_METHODS,
        "",
        "every verb with its arguments and a one-line description",
    ),
    verb(
        SYSTEM_METHOD_HELP,
        "<verb>",
        "the one-line description of a verb",
    ),
    verb(CORE_VERSION, "", "the version of the running siplb binary"),
    verb(
        CORE_UPTIME,
        "",
        "now, up_since (local time) and uptime (seconds since start)",
    ),
    verb(
        CORE_INFO,
        "",
        "version, pid, workers, steering mode, listen addresses, config file, control socket",
    ),
    verb(
        CORE_DRAIN,
        "<seconds>",
        "stop admitting calls (503 to new INVITEs and OPTIONS), exit when the last dialog ends or after <seconds>",
    ),
    verb(
        STATS_GET_STATISTICS,
        "[all, <group>: or <group>:<name>]…",
        "statistics, one `group:name = value` line each",
    ),
    verb(DLG_LIST, "", "every dialog not ended, one structure each"),
    verb(
        DLG_STATS_ACTIVE,
        "",
        "dialogs by state: starting, connecting, answering, ongoing, all",
    ),
    verb(
        DLG_PROFILE_GET_SIZE,
        "<profile> [value]",
        "the number of dialogs in a profile (with that value)",
    ),
    verb(
        DLG_PROFILE_LIST,
        "<profile> [value]",
        "the dialogs in a profile (with that value), one structure each",
    ),
    verb(
        DLG_PROFILE_GET_MAX,
        "<profile> [value]",
        "the highest size a profile (value) reached since start",
    ),
    verb(
        DLG_END_DLG,
        "<h_entry> <h_id> [extra_hdrs]",
        "ends a dialog: BYE to both sides (CANCEL if not answered)",
    ),
    verb(
        DLG_TERMINATE_DLG,
        "<callid> <from_tag> <to_tag> [extra_hdrs]",
        "ends a dialog found by Call-ID and tags",
    ),
    verb(
        PIKE_TOP,
        "[count]",
        "the sources the XDP guard's flood limit tracks, busiest first",
    ),
    verb(
        BLOCKLIST,
        "add <ip[/prefix]> / del <ip[/prefix]> / list",
        "the XDP guard's blocklist of IPv4 sources",
    ),
    verb(
        DISPATCHER_LIST,
        "",
        "every gateway set: each gateway's state flags, priority, weight, calls, last probe reply and round trip",
    ),
    verb(
        DISPATCHER_SET_STATE,
        "<a/i/d>[p] <set> <sip:ip:port>",
        "forces a gateway active, inactive or disabled, probed (p) or not",
    ),
    verb(
        DISPATCHER_RELOAD,
        "",
        "re-reads the configuration file and applies only its gateway sets and routes",
    ),
    verb(
        CFG_RELOAD,
        "",
        "re-reads the configuration file and applies what can change live",
    ),
    verb(
        LOG_LEVEL,
        "[level]",
        "the log level in force, or sets it (Kamailio: corex.debug)",
    ),
];

/// The verb called `name`.
pub fn find(name: &str) -> Option<&'static Verb> {
    VERBS.iter().find(|v| v.name == name)
}

/// `name  args  help` lines, the names and arguments in aligned columns.
pub fn lines() -> Vec<String> {
    let w_name = VERBS.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let w_args = VERBS.iter().map(|v| v.args.len()).max().unwrap_or(0);
    VERBS
        .iter()
        .map(|v| format!("{:w_name$}  {:w_args$}  {}", v.name, v.args, v.help))
        .collect()
}

/// The verb list for `siplb ctl --help`.
pub fn help_text() -> String {
    let mut s = String::from("Verbs:\n");
    for l in lines() {
        s.push_str("  ");
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// The verbs whose name is close to `name` (a typo or a part of it), closest first.
pub fn close_matches(name: &str) -> Vec<&'static str> {
    let lower = name.to_ascii_lowercase();
    let mut found: Vec<(usize, &'static str)> = VERBS
        .iter()
        .filter_map(|v| {
            let cand = v.name.to_ascii_lowercase();
            let d = distance(&lower, &cand);
            // Two edits, or one in four characters for long names.
            let near = d <= 2.max(lower.len() / 4);
            // A part of the name: `list` → `dlg.list`, `profile` → the profile verbs.
            let part = lower.len() >= 3 && cand.contains(&lower);
            // The same method in another group: `stats.list` → nothing, `foo.list` → `dlg.list`.
            let method = lower.rsplit_once('.').is_some_and(|(_, m)| {
                m.len() >= 3 && cand.rsplit_once('.').is_some_and(|(_, c)| c == m)
            });
            // Its words in another order or with some left out: `profile_size`.
            let words = |s: &str| -> Vec<String> {
                s.split(['.', '_'])
                    .filter(|w| !w.is_empty())
                    .map(String::from)
                    .collect()
            };
            let (mine, theirs) = (words(&lower), words(&cand));
            let all_words = mine.len() >= 2 && mine.iter().all(|w| theirs.contains(w));
            (near || part || method || all_words).then_some((d, v.name))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, n)| n).collect()
}

/// The error for an unknown verb, with the close matches.
pub fn unknown(name: &str) -> String {
    let close = close_matches(name);
    if close.is_empty() {
        format!("unknown command `{name}` (`siplb ctl --help` lists the verbs)")
    } else {
        format!(
            "unknown command `{name}`; did you mean: {}?",
            close.join(", ")
        )
    }
}

/// Levenshtein distance (bytes).
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = VERBS.iter().map(|v| v.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), VERBS.len());
    }

    #[test]
    fn descriptions_are_one_line() {
        for v in VERBS {
            assert!(!v.help.is_empty() && !v.help.contains('\n'), "{}", v.name);
            assert!(!v.args.contains('\n'), "{}", v.name);
        }
    }

    /// docs/CLI.md has a row for every verb of the table, with the same arguments.
    #[test]
    fn every_verb_is_documented_in_cli_md() {
        let doc = include_str!("../../../docs/CLI.md");
        let mut missing = Vec::new();
        for v in VERBS {
            // `| verb | arguments | output |`, no `|` inside a cell.
            let name = format!("`{}`", v.name);
            let Some(cells) = doc
                .lines()
                .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
                .find(|c| c.len() == 5 && c[1] == name)
            else {
                missing.push(v.name.to_string());
                continue;
            };
            let args = cells[2];
            let want = if v.args.is_empty() {
                String::new()
            } else {
                format!("`{}`", v.args)
            };
            if args != want {
                missing.push(format!(
                    "{} (arguments {want:?}, documented {args:?})",
                    v.name
                ));
            }
        }
        assert!(
            missing.is_empty(),
            "not in docs/CLI.md's table: {missing:?}"
        );
    }

    #[test]
    fn close_matches_of_typos_and_parts() {
        assert_eq!(close_matches("dlg.lst"), ["dlg.list"]);
        assert_eq!(close_matches("DLG.LIST")[0], "dlg.list");
        assert_eq!(close_matches("core.uptim"), ["core.uptime"]);
        assert!(close_matches("stats.get_statistic").contains(&"stats.get_statistics"));
        let p = close_matches("profile");
        for v in [DLG_PROFILE_GET_SIZE, DLG_PROFILE_LIST, DLG_PROFILE_GET_MAX] {
            assert!(p.contains(&v), "{v} in {p:?}");
        }
        assert_eq!(close_matches("foo.list")[0], "dlg.list");
        assert_eq!(close_matches("profile_size"), [DLG_PROFILE_GET_SIZE]);
        assert_eq!(close_matches("size_profile"), [DLG_PROFILE_GET_SIZE]);
        assert!(close_matches("nonsense").is_empty());
        assert!(unknown("dlg.lst").contains("did you mean: dlg.list?"));
        assert!(unknown("xyzzy").contains("siplb ctl --help"));
    }

    #[test]
    fn help_lists_every_verb_with_its_description() {
        let h = help_text();
        for v in VERBS {
            let line = h
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", v.name)))
                .unwrap_or_else(|| panic!("{} not in {h}", v.name));
            assert!(line.ends_with(v.help), "{line}");
        }
    }

    #[test]
    fn levenshtein() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("dlg.lst", "dlg.list"), 1);
    }
}
