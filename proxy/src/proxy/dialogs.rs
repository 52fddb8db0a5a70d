//! The dialog a shard keeps from the first INVITE on (Kamailio's `dialog` module record): who
//! the two peers are, the tags, contacts and CSeqs of both sides, its state with Kamailio's
//! numbers, its times and the profiles it counts in.

use crate::dialog::Membership;
use std::net::SocketAddr;
use std::time::Instant;

/// Kamailio's dialog states, with its numbers (`dlg.list` shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum CallState {
    /// INVITE forwarded, no provisional answer yet.
    Unconfirmed = 1,
    /// A provisional answer (101–199) came back.
    Early = 2,
    /// A 2xx was forwarded; no ACK yet.
    ConfirmedNoAck = 3,
    /// The ACK for the 2xx passed.
    Confirmed = 4,
    /// Ended (BYE, failure, timeout, admin): kept only to absorb stragglers.
    Ended = 5,
}

impl CallState {
    pub fn number(self) -> u8 {
        self as u8
    }

    /// Not answered yet (Kamailio's early dialogs).
    pub fn is_early(self) -> bool {
        matches!(self, CallState::Unconfirmed | CallState::Early)
    }

    /// Answered and not ended.
    pub fn is_confirmed(self) -> bool {
        matches!(self, CallState::ConfirmedNoAck | CallState::Confirmed)
    }
}

/// Why a dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// BYE from either side.
    Bye,
    /// The INVITE failed (non-2xx final, CANCEL, no answer).
    Failed,
    /// `default_timeout` or `noack_timeout`: siplb sent BYE to both sides.
    Expired,
    /// `dlg.end_dlg` / `dlg.terminate_dlg`.
    Admin,
}

/// One side of a dialog, as Kamailio's `dlg.list` shows it.
#[derive(Debug, Default)]
pub struct Leg {
    pub tag: Box<[u8]>,
    pub contact: Box<[u8]>,
    /// Highest CSeq number seen from this side.
    pub cseq: u32,
    /// Route set toward this side (Route header values, comma-separated).
    pub route_set: Box<[u8]>,
}

#[derive(Debug)]
pub struct Call {
    pub call_id: Box<[u8]>,
    /// Where the INVITE came from: in-dialog requests toward the caller go here.
    pub caller: SocketAddr,
    /// The gateway chosen for the call: in-dialog requests toward the callee go here.
    pub gateway: SocketAddr,
    pub caller_leg: Leg,
    /// The callee side; its tag is empty until the 2xx names it.
    pub callee_leg: Leg,
    /// The From header value of the INVITE (caller's tag included).
    pub from: Box<[u8]>,
    /// The To header value, from the 2xx once there is one (callee's tag included).
    pub to: Box<[u8]>,
    pub state: CallState,
    /// When the INVITE arrived; when the 2xx passed.
    pub created: Instant,
    pub answered: Option<Instant>,
    /// Unix times in ms: INVITE (Kamailio `init_ts`), answer (`start_ts`), end (`end_ts`).
    pub init_ms: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    /// The INVITE transaction (slot, generation), for the early timeout.
    pub invite: Option<(u32, u32)>,
    /// An early-timeout CANCEL was sent.
    pub early_cancelled: bool,
    /// When the record is removed.
    pub expires: Instant,
    /// The profiles the dialog counts in; emptied (places given back) when it ends.
    pub profiles: Vec<Membership>,
    /// Dialog variables (Kamailio `$dlg_var`): built-in times and configured values.
    pub vars: Vec<(Box<str>, Box<str>)>,
    pub end_cause: Option<EndCause>,
}

impl Call {
    pub fn caller_tag(&self) -> &[u8] {
        &self.caller_leg.tag
    }

    /// The callee's tag, once the 2xx named it.
    pub fn callee_tag(&self) -> Option<&[u8]> {
        Some(&*self.callee_leg.tag).filter(|t| !t.is_empty())
    }

    /// Where an in-dialog request with this From tag, received from `src`, goes: to the
    /// gateway when the caller sent it, to the caller when the callee did.
    pub fn peer_for(&self, from_tag: Option<&[u8]>, src: SocketAddr) -> Option<SocketAddr> {
        match from_tag {
            Some(t) if t == self.caller_tag() => Some(self.gateway),
            Some(t) if self.callee_tag() == Some(t) => Some(self.caller),
            // A callee tag not seen yet (e.g. a BYE racing the 2xx): go by source.
            Some(_) if src == self.gateway => Some(self.caller),
            _ => None,
        }
    }

    /// Sets a dialog variable (replacing one of the same name).
    pub fn set_var(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| &**n == name) {
            Some(v) => v.1 = value.into(),
            None => self.vars.push((name.into(), value.into())),
        }
    }

    /// Whether the To tag of an in-dialog request names the other side of this dialog (RFC
    /// 3261 §12.2.2: a dialog is its Call-ID and both tags). Until the answer names the callee,
    /// a request from the caller may carry any To tag (early dialogs of several forks).
    pub fn to_tag_matches(&self, from_tag: Option<&[u8]>, to_tag: Option<&[u8]>) -> bool {
        if self.from_caller(from_tag) {
            match self.callee_tag() {
                Some(callee) => to_tag == Some(callee),
                None => true,
            }
        } else {
            to_tag == Some(self.caller_tag())
        }
    }

    /// Whether a request with this From tag comes from the caller's side.
    pub fn from_caller(&self, from_tag: Option<&[u8]>) -> bool {
        from_tag == Some(self.caller_tag())
    }
}

/// Which dialogs a control query wants.
#[derive(Debug, Clone, Default)]
pub struct DialogFilter {
    /// Only those in this profile (and with this value in it).
    pub profile: Option<(crate::dialog::ProfileId, Option<Box<[u8]>>)>,
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
