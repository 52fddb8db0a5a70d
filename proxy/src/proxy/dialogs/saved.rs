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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLeg {
    pub tag: String,
    pub contact: String,
    pub cseq: u32,
    pub route_set: String,
}

impl SavedLeg {
    fn of(l: &Leg) -> SavedLeg {
        SavedLeg {
            tag: text(&l.tag),
            contact: text(&l.contact),
            cseq: l.cseq(),
            route_set: text(&l.route_set),
        }
    }

    fn leg(&self) -> Leg {
        Leg::new(
            self.tag.as_bytes(),
            self.contact.as_bytes(),
            self.cseq,
            self.route_set.as_bytes().to_vec(),
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
}

impl SavedDialog {
    /// `d` (answered, not ended) as the journal keeps it; `customers` in configuration
    /// order.
    pub fn of(
        h_entry: u32,
        h_id: u64,
        d: &Dialog,
        profiles: &Profiles,
        customers: &[Customer],
    ) -> SavedDialog {
        SavedDialog {
            h_entry,
            h_id,
            call_id: text(&d.call_id),
            caller: d.caller.addr,
            gateway: d.gateway.addr,
            caller_leg: SavedLeg::of(&d.caller_leg),
            callee_leg: SavedLeg::of(&d.callee_leg),
            from: text(&d.from),
            to: text(&d.to),
            request_uri: text(&d.request_uri),
            account: text(&d.account),
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
            places: d
                .profiles
                .iter()
                .map(|m| {
                    (
                        profiles.list[m.profile as usize].name.clone(),
                        m.value.as_ref().map(|(v, _)| text(v)),
                        m.customer,
                    )
                })
                .collect(),
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
            .map(|(p, v, c)| {
                let c = customer.unwrap_or(*c);
                (p.clone(), v.as_ref().map(|v| v.as_bytes().into()), c)
            })
            .collect();
        // An Instant `ms` unix ms ago (or now, for a time in the future).
        let at = |ms: u64| now.checked_sub(Duration::from_millis(now_ms.saturating_sub(ms)));
        let answered = at(self.answer).unwrap_or(now);
        Dialog {
            call_id: self.call_id.as_bytes().into(),
            caller: Target::udp(self.caller),
            gateway: Target::udp(self.gateway),
            caller_leg: self.caller_leg.leg(),
            callee_leg: self.callee_leg.leg(),
            early_tag: Box::default(),
            from: self.from.as_bytes().into(),
            to: self.to.as_bytes().into(),
            request_uri: self.request_uri.as_bytes().into(),
            account: self.account.as_bytes().into(),
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
        }
    }
}
