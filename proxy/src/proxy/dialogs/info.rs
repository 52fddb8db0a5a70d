//! What the control socket sees of a shard's dialogs: filters, snapshots in Kamailio's
//! `dlg.list` fields, and the ways an operator names a dialog to end.

use super::{Dialog, DialogState, Leg};
use crate::dialog::{ProfileId, Profiles};
use crate::proxy::DialogTimers;
use crate::proxy::ids::DialogId;
use crate::sip::Span;
use crate::sip::value::NameAddr;
use std::time::Instant;

/// Which dialogs a control query wants.
#[derive(Debug, Clone, Default)]
pub struct DialogFilter {
    /// Only those in this profile (and with this value in it).
    pub profile: Option<(ProfileId, Option<Box<[u8]>>)>,
}

impl DialogFilter {
    pub fn matches(&self, d: &Dialog) -> bool {
        let Some((p, v)) = &self.profile else {
            return true;
        };
        d.profiles.iter().any(|m| {
            m.profile == *p
                && v.as_deref()
                    .is_none_or(|v| m.value.as_ref().is_some_and(|(mv, _)| **mv == *v))
        })
    }
}

/// Which dialog `dlg.end_dlg` / `dlg.terminate_dlg` ends.
#[derive(Debug, Clone)]
pub enum EndTarget {
    /// Kamailio's `h_entry` and `h_id`.
    Id { h_entry: u32, h_id: u64 },
    /// Call-ID, From tag, To tag.
    Tags {
        call_id: Box<[u8]>,
        from_tag: Box<[u8]>,
        to_tag: Box<[u8]>,
    },
}

/// One side of a dialog in a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegInfo {
    pub tag: String,
    pub contact: String,
    pub cseq: u32,
    pub route_set: String,
    pub socket: String,
}

/// A dialog as `dlg.list` shows it (Kamailio's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialogInfo {
    pub h_entry: u32,
    pub h_id: u64,
    pub call_id: String,
    pub from_uri: String,
    pub to_uri: String,
    pub state: u8,
    /// Unix seconds: answer (0 before), INVITE, end (0 before).
    pub start_ts: u64,
    pub init_ts: u64,
    pub end_ts: u64,
    /// Seconds since the answer.
    pub duration: u64,
    /// Unix second the dialog times out.
    pub timeout: u64,
    /// Seconds an answered dialog lives.
    pub lifetime: u64,
    pub caller: LegInfo,
    pub callee: LegInfo,
    /// `name` or `name: value`.
    pub profiles: Vec<String>,
    pub variables: Vec<(String, String)>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The URI of a name-addr header value (empty when it has none).
pub fn uri_of(v: &[u8]) -> String {
    NameAddr::locate(v, Span::new(0, v.len())).map_or_else(String::new, |na| lossy(na.uri.of(v)))
}

impl DialogInfo {
    /// The snapshot of dialog `id` at `now`; `socket` is siplb's in Kamailio's notation.
    pub fn of(
        id: DialogId,
        d: &Dialog,
        now: Instant,
        timers: &DialogTimers,
        profiles: &Profiles,
        socket: &str,
    ) -> DialogInfo {
        let unix_s = |ms: u64| ms / 1000;
        let leg = |l: &Leg| LegInfo {
            tag: lossy(&l.tag),
            contact: lossy(&l.contact),
            cseq: l.cseq(),
            route_set: lossy(&l.route_set),
            socket: socket.to_string(),
        };
        let timeout = match d.answered {
            Some(_) => unix_s(d.times.answer) + timers.default_timeout.as_secs(),
            None => unix_s(d.times.invite_received) + timers.early_timeout.as_secs(),
        };
        DialogInfo {
            h_entry: id.h_entry(),
            h_id: id.h_id(),
            call_id: lossy(&d.call_id),
            from_uri: uri_of(&d.from),
            to_uri: uri_of(&d.to),
            state: d.state.number(),
            start_ts: unix_s(d.times.answer),
            init_ts: unix_s(d.times.invite_received),
            end_ts: unix_s(d.times.end),
            duration: d
                .answered
                .map_or(0, |a| now.saturating_duration_since(a).as_secs()),
            timeout,
            lifetime: timers.default_timeout.as_secs(),
            caller: leg(&d.caller_leg),
            callee: LegInfo {
                tag: lossy(d.shown_callee_tag()),
                ..leg(&d.callee_leg)
            },
            profiles: d
                .profiles
                .iter()
                .map(|m| {
                    let name = &profiles.list[m.profile as usize].name;
                    match &m.value {
                        Some((v, _)) => format!("{name}: {}", lossy(v)),
                        None => name.clone(),
                    }
                })
                .collect(),
            variables: d
                .vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// Whether a dialog is one `dlg.list` shows (not ended).
pub fn listed(d: &Dialog) -> bool {
    d.state != DialogState::Ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_of_takes_the_uri_out_of_a_name_addr() {
        assert_eq!(uri_of(b"\"A\" <sip:a@x>;tag=1"), "sip:a@x");
        assert_eq!(uri_of(b"sip:b@y;tag=2"), "sip:b@y");
    }

    #[test]
    fn an_empty_filter_matches_every_dialog_and_a_profile_filter_only_members() {
        let d = crate::proxy::dialogs::tests_support::dialog();
        assert!(DialogFilter::default().matches(&d));
        let f = DialogFilter {
            profile: Some((0, None)),
        };
        assert!(!f.matches(&d), "the dialog is in no profile");
    }
}
