//! Dialogs (Kamailio's `dialog` module record): what a shard keeps of a call from its first
//! INVITE on — the two peers, the tags, contacts, CSeqs and route sets of both sides, the
//! state with Kamailio's numbers, the times accounting needs and the profiles it counts in.
//! [`table`] keeps a shard's dialogs; [`info`] is what the control socket sees of them.

pub mod info;
pub mod saved;
pub mod table;

pub use info::{DialogFilter, DialogInfo, EndTarget, LegInfo};
pub use table::DialogTable;

use super::event::EndedBy;
use super::ids::TxnId;
use super::target::Target;
use crate::dialog::Membership;
use std::time::Instant;

/// Kamailio's dialog states, with its numbers (`dlg.list` shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum DialogState {
    /// INVITE forwarded, no provisional answer yet.
    Unconfirmed = 1,
    /// A provisional answer (101–199) came back.
    Early = 2,
    /// A 2xx was forwarded; no ACK yet.
    ConfirmedNoAck = 3,
    /// The ACK for the 2xx passed.
    Confirmed = 4,
    /// Ended (BYE, failure, timeout, operator): kept only to absorb stragglers.
    Ended = 5,
}

impl DialogState {
    pub fn number(self) -> u8 {
        self as u8
    }

    /// Not answered yet (Kamailio's early dialogs).
    pub fn is_early(self) -> bool {
        matches!(self, DialogState::Unconfirmed | DialogState::Early)
    }

    /// Answered and not ended.
    pub fn is_confirmed(self) -> bool {
        matches!(self, DialogState::ConfirmedNoAck | DialogState::Confirmed)
    }
}

/// One side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Caller,
    Callee,
}

/// Why a dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// The INVITE failed (non-2xx final, CANCEL, no answer).
    Failed,
    /// A BYE from this side.
    Bye(Side),
    /// `default_timeout` or `noack_timeout`: siplb sent BYE to both sides.
    Expired,
    /// `dlg.end_dlg` / `dlg.terminate_dlg`.
    Operator,
    /// siplb stopped with `[shutdown] dialogs = "bye"`: BYE to both sides.
    Shutdown,
}

/// One side of a dialog, as Kamailio's `dlg.list` shows it.
#[derive(Debug, Default)]
pub struct Leg {
    pub tag: Box<[u8]>,
    pub contact: Box<[u8]>,
    /// Highest CSeq number seen from this side, or sent by siplb as this side: read and
    /// written only through [`Leg::cseq`], [`Leg::saw_cseq`] and [`Leg::next_cseq`].
    cseq: u32,
    /// Route set toward this side (Route header values, comma-separated).
    pub route_set: Box<[u8]>,
}

impl Leg {
    pub fn new(tag: &[u8], contact: &[u8], cseq: u32, route_set: Vec<u8>) -> Leg {
        Leg {
            tag: tag.into(),
            contact: contact.into(),
            cseq,
            route_set: route_set.into(),
        }
    }

    /// The CSeq number this side last used.
    pub fn cseq(&self) -> u32 {
        self.cseq
    }

    /// A request from this side carried `cseq`.
    pub fn saw_cseq(&mut self, cseq: u32) {
        self.cseq = self.cseq.max(cseq);
    }

    /// The CSeq of a request siplb sends in this side's name (a BYE it originates).
    pub fn next_cseq(&mut self) -> u32 {
        // Below 2^31 (RFC 3261 §8.1.1.5) even after a damaged restart journal.
        self.cseq = self.cseq.saturating_add(1).min(i32::MAX as u32);
        self.cseq
    }
}

/// Unix times in ms of a dialog's moments; 0 until the moment came.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DialogTimes {
    /// The INVITE arrived (Kamailio `init_ts`).
    pub invite_received: u64,
    /// It was forwarded to the gateway.
    pub invite_forwarded: u64,
    /// The first response from the gateway (any, 100 included).
    pub first_reply: u64,
    /// The first 180 or 183.
    pub ringing: u64,
    /// The 2xx (Kamailio `start_ts`).
    pub answer: u64,
    /// The end (Kamailio `end_ts`).
    pub end: u64,
}

/// The final reply of the INVITE, or the Q.850 cause of the BYE that ended the dialog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub code: Option<u16>,
    pub reason: Box<str>,
    /// From a `Reason: Q.850;cause=N` header of the final reply or the BYE.
    pub q850_cause: Option<u16>,
}

#[derive(Debug)]
pub struct Dialog {
    pub call_id: Box<[u8]>,
    /// Where the INVITE came from: in-dialog requests toward the caller go here.
    pub caller: Target,
    /// The gateway chosen for the call: in-dialog requests toward the callee go here.
    pub gateway: Target,
    pub caller_leg: Leg,
    /// The callee side; its tag is empty until the 2xx names it.
    pub callee_leg: Leg,
    /// The To tag of the last provisional relayed for the INVITE, while it is not answered
    /// (what `dlg.list` shows and `dlg.terminate_dlg` finds a ringing call by).
    pub early_tag: Box<[u8]>,
    /// The From header value of the INVITE (caller's tag included).
    pub from: Box<[u8]>,
    /// The To header value, from the 2xx once there is one (callee's tag included).
    pub to: Box<[u8]>,
    /// The Request-URI of the INVITE as received.
    pub request_uri: Box<[u8]>,
    /// The value in profile `account`.
    pub account: Box<[u8]>,
    pub state: DialogState,
    /// When the INVITE arrived; when the 2xx passed.
    pub created: Instant,
    pub answered: Option<Instant>,
    pub times: DialogTimes,
    pub outcome: Outcome,
    /// The INVITE transaction, for the early timeout.
    pub invite: Option<TxnId>,
    /// An early-timeout CANCEL was sent.
    pub early_cancelled: bool,
    /// Who had the INVITE cancelled before the answer, the first to ask: the caller (its
    /// CANCEL), an operator (`dlg.end_dlg`), the ringing's timeout (the early timeout, or
    /// Timer C), siplb stopping (`[shutdown] dialogs = "bye"`).
    pub cancelled_by: Option<EndedBy>,
    /// When the record is removed.
    pub expires: Instant,
    /// The profiles the dialog counts in; emptied (places given back) when it ends.
    pub profiles: Vec<Membership>,
    /// Dialog variables (Kamailio `$dlg_var`): built-in times and configured values.
    pub vars: Vec<(Box<str>, Box<str>)>,
    pub end_cause: Option<EndCause>,
    /// The gateways the INVITE went to, in order (failover); the last is `gateway`.
    pub tried: Vec<std::net::SocketAddr>,
    /// The gateway set of the call, and the worker's turn it was given (the choice's key).
    pub set: u16,
    pub turn: u64,
    /// How far the CSeq of the requests toward the trunk (from the caller on an outgoing
    /// call, from the customer's target on an inbound one) is raised: one per authenticated
    /// resend (Kamailio's `track_cseq_updates`); the answers are lowered back by their
    /// transaction's shift. See [`Dialog::cseq_shift_of`].
    pub cseq_shift: u32,
    /// A call from a gateway to a customer: `gateway` is then the customer's target, and the
    /// trunk is the caller.
    pub inbound: bool,
    /// The place the call holds on its gateway (`max_calls`), given back when it ends.
    pub load: Option<std::sync::Arc<crate::proxy::gateway::GatewayState>>,
    /// The INVITE's parties as its transaction's report read them, kept for the dialog's
    /// own report (not parsed again from `from`, `to` and `request_uri`); none when
    /// transactions are not reported, or the dialog was restored.
    pub parties: Option<Box<crate::proxy::event::Parties>>,
}

impl Dialog {
    /// The trunk of the call: the gateway it went to, or (inbound) the one it came from.
    pub fn trunk(&self) -> Target {
        if self.inbound {
            self.caller
        } else {
            self.gateway
        }
    }

    /// The user part of the From URI (the key of the From-user hash).
    pub fn from_user(&self) -> Vec<u8> {
        let v = &self.from[..];
        crate::sip::value::NameAddr::locate(v, crate::sip::Span::new(0, v.len())).map_or_else(
            Vec::new,
            |na| {
                crate::sip::value::SipUri::user_and_host(v, na.uri)
                    .0
                    .to_vec()
            },
        )
    }

    pub fn caller_tag(&self) -> &[u8] {
        &self.caller_leg.tag
    }

    /// The callee's tag, once the 2xx named it.
    pub fn callee_tag(&self) -> Option<&[u8]> {
        Some(&*self.callee_leg.tag).filter(|t| !t.is_empty())
    }

    /// The callee's tag as an operator sees it: the 2xx's, or before the answer the last
    /// provisional's (empty when neither had one).
    pub fn shown_callee_tag(&self) -> &[u8] {
        self.callee_tag().unwrap_or(&self.early_tag)
    }

    /// Where an in-dialog request with this From tag, received from `src`, goes: to the
    /// gateway when the caller sent it, to the caller when the callee did. A request that
    /// names the trunk's side by its tag must come from the trunk itself (`from_trunk`: `src`
    /// is an address of the call's gateway): a customer that sends a BYE with the tags the
    /// other way round would otherwise end the dialog (and free its place in the limits)
    /// while the trunk's call stays up.
    pub fn peer_for(
        &self,
        from_tag: Option<&[u8]>,
        src: Target,
        from_trunk: bool,
    ) -> Option<Target> {
        match from_tag {
            Some(t) if t == self.caller_tag() => {
                (!self.inbound || from_trunk).then_some(self.gateway)
            }
            Some(t) if self.callee_tag() == Some(t) => {
                (self.inbound || from_trunk).then_some(self.caller)
            }
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

    /// The address of the side that sends requests with this From tag: the caller's source,
    /// or the gateway (an inbound call's customer target) the call went to.
    pub fn side_address(&self, from_tag: Option<&[u8]>) -> Target {
        if self.from_caller(from_tag) {
            self.caller
        } else {
            self.gateway
        }
    }

    /// The CSeq shift of a request with this From tag: the dialog's `cseq_shift` when it goes
    /// toward the trunk (the trunk answers challenges on its own requests itself), else 0.
    pub fn cseq_shift_of(&self, from_tag: Option<&[u8]>) -> u32 {
        self.cseq_shift_of_side(self.from_caller(from_tag))
    }

    /// The CSeq shift of a request from the caller's side (`caller`) or the callee's.
    pub fn cseq_shift_of_side(&self, caller: bool) -> u32 {
        if caller != self.inbound {
            self.cseq_shift
        } else {
            0
        }
    }

    /// Whether a request with this From tag comes from the caller's side.
    pub fn from_caller(&self, from_tag: Option<&[u8]>) -> bool {
        from_tag == Some(self.caller_tag())
    }

    /// The leg of the side that sent a request with this From tag.
    pub fn leg_of_sender(&mut self, from_tag: Option<&[u8]>) -> &mut Leg {
        if self.from_caller(from_tag) {
            &mut self.caller_leg
        } else {
            &mut self.callee_leg
        }
    }
}

/// A dialog record for unit tests: caller 127.0.0.1:5070 (tag `a`), gateway 127.0.0.1:5081.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn dialog() -> Dialog {
        let now = Instant::now();
        Dialog {
            call_id: (*b"c1").into(),
            caller: Target::udp("127.0.0.1:5070".parse().unwrap()),
            gateway: Target::udp("127.0.0.1:5081".parse().unwrap()),
            caller_leg: Leg::new(b"a", b"sip:a@h", 1, Vec::new()),
            callee_leg: Leg::default(),
            early_tag: Box::default(),
            from: (*b"<sip:a@x>;tag=a").into(),
            to: (*b"<sip:b@x>").into(),
            request_uri: (*b"sip:b@x").into(),
            account: (*b"a").into(),
            state: DialogState::Unconfirmed,
            created: now,
            answered: None,
            times: DialogTimes::default(),
            outcome: Outcome::default(),
            invite: None,
            early_cancelled: false,
            cancelled_by: None,
            expires: now,
            profiles: Vec::new(),
            vars: Vec::new(),
            end_cause: None,
            tried: vec!["127.0.0.1:5081".parse().unwrap()],
            set: 0,
            turn: 0,
            load: None,
            parties: None,
            cseq_shift: 0,
            inbound: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::dialog;
    use super::*;

    #[test]
    fn requests_go_to_the_other_side() {
        let mut d = dialog();
        let (caller, gw) = (d.caller, d.gateway);
        let other = Target::udp("127.0.0.1:5082".parse().unwrap());
        // Whether a source is the call's trunk (here: exactly its address).
        let peer =
            |d: &Dialog, tag: &[u8], src: Target| d.peer_for(Some(tag), src, src == d.trunk());
        assert_eq!(peer(&d, b"a", caller), Some(gw));
        assert_eq!(peer(&d, b"b", gw), Some(caller), "callee tag not seen yet");
        assert_eq!(peer(&d, b"b", caller), None);
        d.callee_leg.tag = (*b"b").into();
        assert_eq!(peer(&d, b"b", gw), Some(caller));
        // The callee's tag from anywhere but the gateway: the customer posing as the callee.
        assert_eq!(peer(&d, b"b", caller), None);
        assert_eq!(peer(&d, b"b", other), None);
        // Inbound, the trunk is the caller: the caller's tag must come from it.
        d.inbound = true;
        assert_eq!(peer(&d, b"a", caller), Some(gw));
        assert_eq!(peer(&d, b"a", gw), None);
        assert_eq!(peer(&d, b"b", other), Some(caller));
    }

    #[test]
    fn to_tag_must_name_the_other_side_once_known() {
        let mut d = dialog();
        assert!(d.to_tag_matches(Some(b"a"), Some(b"anything")));
        d.callee_leg.tag = (*b"b").into();
        assert!(d.to_tag_matches(Some(b"a"), Some(b"b")));
        assert!(!d.to_tag_matches(Some(b"a"), Some(b"x")));
        assert!(d.to_tag_matches(Some(b"b"), Some(b"a")));
    }

    #[test]
    fn cseq_only_grows_and_local_requests_take_the_next() {
        let mut leg = Leg::new(b"a", b"", 5, Vec::new());
        leg.saw_cseq(3);
        assert_eq!(leg.cseq(), 5);
        leg.saw_cseq(7);
        assert_eq!(leg.next_cseq(), 8);
        assert_eq!(leg.cseq(), 8);
    }
}
