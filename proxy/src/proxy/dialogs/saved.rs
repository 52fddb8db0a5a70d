//! A dialog as the restart journal keeps it: everything needed to route its in-dialog
//! requests, end it (timers, BYE), count it in its profiles and write its CDR, as plain values
//! with unix times. Made from a live [`Dialog`] and made back into one after a restart.
//! Encoding to the journal's lines is `serde`'s; the file is `crate::restart`'s.

use super::{Dialog, DialogState, DialogTimes, EndCause, Leg, Outcome};
use crate::dialog::Profiles;
use crate::proxy::route::Customer;
use crate::proxy::target::Target;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The bytes of a dialog's fields that are not UTF-8, by field name: the journal's field
/// shows them with U+FFFD, and the restored dialog gets them back as they were, so that a
/// tag, Contact or Call-ID with such bytes still matches after a restart.
type RawFields = Vec<(String, Vec<u8>)>;

/// The names a leg's fields (tag, contact, route set) are kept under in `raw`.
const CALLER_LEG: [&str; 3] = [
    "caller_leg.tag",
    "caller_leg.contact",
    "caller_leg.route_set",
];
const CALLEE_LEG: [&str; 3] = [
    "callee_leg.tag",
    "callee_leg.contact",
    "callee_leg.route_set",
];

/// `b` as the journal's text; kept in `raw` too when it is not UTF-8, under `name` (the
/// name made only then: a dialog is saved at each change).
fn keep(raw: &mut RawFields, name: impl FnOnce() -> String, b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => {
            raw.push((name(), b.to_vec()));
            text(b)
        }
    }
}

/// The bytes of field `name`: from `raw` when kept there, else its text's.
fn bytes<'a>(raw: &'a RawFields, name: &str, text: &'a str) -> &'a [u8] {
    raw.iter()
        .find(|(n, _)| n == name)
        .map_or(text.as_bytes(), |(_, b)| b.as_slice())
}

/// The name a profile value is kept under in `raw`: its place's index.
fn place_name(i: usize) -> String {
    format!("places.{i}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLeg {
    pub tag: String,
    pub contact: String,
    pub cseq: u32,
    pub route_set: String,
}

impl SavedLeg {
    /// `l`, its fields kept in `raw` under `names` ([`CALLER_LEG`], [`CALLEE_LEG`]).
    fn of(l: &Leg, names: [&str; 3], raw: &mut RawFields) -> SavedLeg {
        SavedLeg {
            tag: keep(raw, || names[0].into(), &l.tag),
            contact: keep(raw, || names[1].into(), &l.contact),
            cseq: l.cseq(),
            route_set: keep(raw, || names[2].into(), &l.route_set),
        }
    }

    fn leg(&self, names: [&str; 3], raw: &RawFields) -> Leg {
        Leg::new(
            bytes(raw, names[0], &self.tag),
            bytes(raw, names[1], &self.contact),
            self.cseq,
            bytes(raw, names[2], &self.route_set).to_vec(),
        )
    }
}

/// A place the dialog holds: profile name, value, customer (its index when saved; the
/// dialog's `customer` names it).
pub type SavedPlace = (String, Option<String>, u16);

/// The customer index of the places of a dialog whose customer is gone from the
/// configuration: counted apart from every customer there is.
pub const REMOVED_CUSTOMER: u16 = u16::MAX;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDialog {
    /// Kamailio's `h_entry` and `h_id` when it was saved.
    pub h_entry: u32,
    pub h_id: u64,
    pub call_id: String,
    pub caller: SocketAddr,
    pub gateway: SocketAddr,
    pub caller_leg: SavedLeg,
    pub callee_leg: SavedLeg,
    pub from: String,
    pub to: String,
    pub request_uri: String,
    pub account: String,
    /// Kamailio's state number (3 or 4).
    pub state: u8,
    pub invite_received: u64,
    pub invite_forwarded: u64,
    pub first_reply: u64,
    pub ringing: u64,
    pub answer: u64,
    pub code: Option<u16>,
    pub reason: String,
    pub q850_cause: Option<u16>,
    pub vars: Vec<(String, String)>,
    pub places: Vec<SavedPlace>,
    /// The name of the customer its places count for: a restart whose configuration has
    /// customers added, removed or reordered puts them back under that customer's index
    /// then (none in a journal from before it was kept: the index saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    pub tried: Vec<SocketAddr>,
    pub set: u16,
    pub turn: u64,
    pub cseq_shift: u32,
    pub inbound: bool,
    /// The fields above whose bytes are not UTF-8, as they were (none in a journal from
    /// before it was kept: restored with U+FFFD).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw: RawFields,
}

impl SavedDialog {
    /// Its Call-ID's bytes (the text's, unless they are not UTF-8).
    pub fn call_id_bytes(&self) -> &[u8] {
        bytes(&self.raw, "call_id", &self.call_id)
    }

    /// `d` (answered, not ended) as the journal keeps it; `customers` in configuration
    /// order.
    pub fn of(
        h_entry: u32,
        h_id: u64,
        d: &Dialog,
        profiles: &Profiles,
        customers: &[Customer],
    ) -> SavedDialog {
        let mut raw = RawFields::new();
        let places = d
            .profiles
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    profiles.list[m.profile as usize].name.clone(),
                    m.value
                        .as_ref()
                        .map(|(v, _)| keep(&mut raw, || place_name(i), v)),
                    m.customer,
                )
            })
            .collect();
        SavedDialog {
            h_entry,
            h_id,
            call_id: keep(&mut raw, || "call_id".into(), &d.call_id),
            caller: d.caller.addr,
            gateway: d.gateway.addr,
            caller_leg: SavedLeg::of(&d.caller_leg, CALLER_LEG, &mut raw),
            callee_leg: SavedLeg::of(&d.callee_leg, CALLEE_LEG, &mut raw),
            from: keep(&mut raw, || "from".into(), &d.from),
            to: keep(&mut raw, || "to".into(), &d.to),
            request_uri: keep(&mut raw, || "request_uri".into(), &d.request_uri),
            account: keep(&mut raw, || "account".into(), &d.account),
            state: d.state.number(),
            invite_received: d.times.invite_received,
            invite_forwarded: d.times.invite_forwarded,
            first_reply: d.times.first_reply,
            ringing: d.times.ringing,
            answer: d.times.answer,
            code: d.outcome.code,
            reason: d.outcome.reason.to_string(),
            q850_cause: d.outcome.q850_cause,
            vars: d
                .vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            places,
            customer: d
                .profiles
                .first()
                .and_then(|m| customers.iter().find(|c| c.slot == m.customer))
                .map(|c| c.name.clone()),
            tried: d.tried.clone(),
            set: d.set,
            turn: d.turn,
            cseq_shift: d.cseq_shift,
            inbound: d.inbound,
            raw,
        }
    }

    /// The dialog again, at `now` (unix ms `now_ms`), its places taken again in `profiles`
    /// for its customer as `customers` (in configuration order) place it now; it
    /// expires `default_timeout` after its answer, as it would have.
    pub fn dialog(
        &self,
        now: Instant,
        now_ms: u64,
        default_timeout: Duration,
        profiles: &Profiles,
        customers: &[Customer],
    ) -> Dialog {
        let customer = self.customer.as_ref().map(|name| {
            customers
                .iter()
                .find(|c| c.name == *name)
                .map_or(REMOVED_CUSTOMER, |c| c.slot)
        });
        let places: Vec<crate::dialog::profiles::NamedPlace> = self
            .places
            .iter()
            .enumerate()
            .map(|(i, (p, v, c))| {
                let c = customer.unwrap_or(*c);
                let v = v
                    .as_ref()
                    .map(|v| bytes(&self.raw, &place_name(i), v).into());
                (p.clone(), v, c)
            })
            .collect();
        let raw = &self.raw;
        // An Instant `ms` unix ms ago (or now, for a time in the future).
        let at = |ms: u64| now.checked_sub(Duration::from_millis(now_ms.saturating_sub(ms)));
        let answered = at(self.answer).unwrap_or(now);
        Dialog {
            call_id: bytes(raw, "call_id", &self.call_id).into(),
            caller: Target::udp(self.caller),
            gateway: Target::udp(self.gateway),
            caller_leg: self.caller_leg.leg(CALLER_LEG, raw),
            callee_leg: self.callee_leg.leg(CALLEE_LEG, raw),
            early_tag: Box::default(),
            from: bytes(raw, "from", &self.from).into(),
            to: bytes(raw, "to", &self.to).into(),
            request_uri: bytes(raw, "request_uri", &self.request_uri).into(),
            account: bytes(raw, "account", &self.account).into(),
            state: if self.state == 3 {
                DialogState::ConfirmedNoAck
            } else {
                DialogState::Confirmed
            },
            created: at(self.invite_received).unwrap_or(answered),
            answered: Some(answered),
            times: DialogTimes {
                invite_received: self.invite_received,
                invite_forwarded: self.invite_forwarded,
                first_reply: self.first_reply,
                ringing: self.ringing,
                answer: self.answer,
                end: 0,
            },
            outcome: Outcome {
                code: self.code,
                reason: self.reason.as_str().into(),
                q850_cause: self.q850_cause,
            },
            invite: None,
            early_cancelled: false,
            cancelled_by: None,
            expires: answered + default_timeout,
            profiles: profiles.rejoin(&places),
            vars: self
                .vars
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            end_cause: None::<EndCause>,
            tried: self.tried.clone(),
            set: self.set,
            turn: self.turn,
            cseq_shift: self.cseq_shift,
            inbound: self.inbound,
            load: None,
            parties: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::dialog;
    use super::*;
    use crate::dialog::Profiles;

    #[test]
    fn bytes_that_are_not_utf8_come_back_as_they_were_after_a_restart() {
        let mut d = dialog();
        d.call_id = (*b"c\xff1").into();
        d.caller_leg = Leg::new(b"a\xfe", b"<sip:a\xc3@h>", 3, b"<sip:r\x80;lr>".to_vec());
        d.callee_leg = Leg::new(b"gw", b"<sip:gw@g>", 1, Vec::new());
        d.from = (*b"<sip:a\xc3@h>;tag=a\xfe").into();
        d.account = (*b"acct\xff").into();
        let limits = crate::dialog::profiles::ProfileLimits::default();
        let profiles = Profiles::new(&[], &[("account".into(), limits)], 10);
        d.profiles = profiles.rejoin(&[("account".into(), Some((*b"acct\xff").into()), 0)]);
        let saved = SavedDialog::of(1, 2, &d, &profiles, &[]);
        assert_eq!(
            saved.call_id, "c\u{fffd}1",
            "the journal's text shows U+FFFD"
        );
        assert_eq!(saved.raw.len(), 7, "{:?}", saved.raw);
        let line = serde_json::to_string(&saved).unwrap();
        let read: SavedDialog = serde_json::from_str(&line).unwrap();
        assert_eq!(read, saved);
        let now = Instant::now();
        let back = read.dialog(now, 1_000, Duration::from_secs(60), &profiles, &[]);
        assert_eq!(back.call_id, d.call_id);
        assert_eq!(back.caller_leg.tag, d.caller_leg.tag);
        assert_eq!(back.caller_leg.contact, d.caller_leg.contact);
        assert_eq!(back.caller_leg.route_set, d.caller_leg.route_set);
        assert_eq!(back.callee_leg.tag, d.callee_leg.tag);
        assert_eq!((&back.from, &back.to), (&d.from, &d.to));
        assert_eq!(back.account, d.account);
        let value = |d: &Dialog| d.profiles[0].value.as_ref().map(|(v, _)| v.clone());
        assert_eq!(value(&back), value(&d));
        assert_eq!(value(&back).as_deref(), Some(&b"acct\xff"[..]));
    }

    #[test]
    fn without_such_bytes_a_journal_line_is_as_before() {
        let d = dialog();
        let profiles = Profiles::new(&[], &[], 10);
        let saved = SavedDialog::of(1, 2, &d, &profiles, &[]);
        assert!(saved.raw.is_empty());
        let line = serde_json::to_string(&saved).unwrap();
        assert!(
            !line.contains("\"raw\""),
            "not written when there are none: {line}"
        );
        let read: SavedDialog = serde_json::from_str(&line).unwrap();
        assert_eq!(read, saved);
    }
}
