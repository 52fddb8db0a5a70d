//! Digest authentication towards trunks (Kamailio's `uac_auth()` with `track_cseq_updates`):
//! a 401/407 from a gateway siplb has credentials for is answered by sending the request again
//! with `Authorization`/`Proxy-Authorization`, a new branch and CSeq + 1; the caller never sees
//! the challenge. From then on the requests of that dialog toward the gateway go out with
//! their CSeq raised by the dialog's shift, and the answers come back lowered by their transaction's
//! (see `requests.rs` and `responses.rs`). One resend per challenge, one more for a stale
//! nonce; a second challenge for the same realm goes to the caller. A challenge for another
//! realm (an SBC's 407 answered, then the softswitch behind it sends its 401) is answered too,
//! the resend carrying the answers to both, up to [`MAX_REALMS`] realms.

use super::Shard;
use crate::proxy::auth::{self, Answered, Challenge};
use crate::proxy::forward::Forward;
use crate::proxy::gateway::Credentials;
use crate::proxy::ids::{DialogId, TxnId};
use crate::proxy::ingress;
use crate::proxy::originate::Branches;
use crate::proxy::txn::{Kind, machine};
use crate::sip::SipMsg;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
const MAX_UDP_PAYLOAD: usize = 65_507;

/// What forwarding adds to a request at most, besides the credentials: siplb's Via and
/// Record-Route, a Max-Forwards, `received`/`rport`.
const FORWARD_GROWTH: usize = 512;

/// The most realms one request answers on its way: an SBC's, the softswitch's behind it, and
/// one more.
const MAX_REALMS: usize = 3;

impl Shard {
    /// The credentials for the gateway at `addr` in the call of `dialog`: those of the call's
    /// gateway set.
    fn credentials(&self, dialog: Option<DialogId>, addr: SocketAddr) -> Option<&Credentials> {
        self.cfg
            .routing
            .gateways
            .credentials_of(self.set_of(dialog), addr)
    }

    /// The gateway set of the call of `dialog` (none for a call from a trunk).
    fn set_of(&self, dialog: Option<DialogId>) -> usize {
        dialog
            .and_then(|d| self.dialogs.get(d))
            .map_or(usize::MAX, |d| usize::from(d.set))
    }

    /// The challenge in response `msg` to transaction `id` that siplb may answer: its request
    /// went to a gateway with credentials, and the challenge is for a realm not answered yet
    /// (or for one answered once whose nonce was stale).
    pub(super) fn answerable_challenge(&self, id: TxnId, msg: &SipMsg<'_>) -> Option<Challenge> {
        let t = self.txns.get(id)?;
        if t.local_request || t.received.is_empty() {
            return None;
        }
        let creds = self.credentials(t.dialog, t.downstream.addr)?;
        let ch = auth::challenge_for(msg, creds)?;
        let answered = t.challenges.as_deref().map_or(&[][..], |a| &a[..]);
        match answered.iter().find(|a| a.challenge.same_realm(&ch)) {
            None => (answered.len() < MAX_REALMS).then_some(ch),
            Some(a) => (ch.stale() && !a.renewed).then_some(ch),
        }
    }

    /// Sends the request of transaction `id` again to the same gateway, answering `ch`.
    /// Whether it went (when not, the challenge is relayed to the caller).
    pub(super) fn authenticate(&mut self, now: Instant, id: TxnId, ch: &Challenge) -> bool {
        let Some(t) = self.txns.get_mut(id) else {
            return false;
        };
        let received = std::mem::take(&mut t.received);
        let done = self.resend_with_credentials(now, id, &received, ch);
        if let Some(t) = self.txns.get_mut(id) {
            t.received = received;
        }
        if done {
            self.stats.auth_resends.inc();
        }
        done
    }

    fn resend_with_credentials(
        &mut self,
        now: Instant,
        id: TxnId,
        received: &[u8],
        ch: &Challenge,
    ) -> bool {
        let Ok(msg) = SipMsg::parse(received) else {
            return false;
        };
        let Some(t) = self.txns.get(id) else {
            return false;
        };
        let (dst, upstream, dialog, kind, shift) = (
            t.downstream,
            t.upstream,
            t.dialog,
            t.kind,
            t.cseq_shift.saturating_add(1),
        );
        // The CSeq number goes up by one with each resend; past 2^31 - 1 it would be no CSeq
        // (RFC 3261 §8.1.1.5): then the challenge goes to the caller instead.
        if u64::from(msg.cseq) + u64::from(shift) >= 1 << 31 {
            return false;
        }
        let set = self.set_of(dialog);
        let Some(creds) = self.cfg.routing.gateways.credentials_of(set, dst.addr) else {
            return false;
        };
        // The method as the request line writes it.
        let method = msg
            .start_line
            .of(msg.buf)
            .split(|&b| b == b' ')
            .next()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        // Every challenge met on the way so far is answered again, the new one replacing a
        // stale one of its realm.
        let mut answered: Vec<Answered> = t.challenges.as_deref().cloned().unwrap_or_default();
        match answered.iter_mut().find(|a| a.challenge.same_realm(ch)) {
            Some(a) => {
                a.challenge = ch.clone();
                a.uses = 0;
                a.renewed = true;
            }
            None => answered.push(Answered {
                challenge: ch.clone(),
                uses: 0,
                renewed: false,
            }),
        }
        let mut header = String::new();
        for a in &mut answered {
            a.uses += 1;
            let Some(h) = answer(
                &mut self.branches,
                &a.challenge,
                creds,
                &method,
                &msg,
                a.uses,
            ) else {
                tracing::debug!(
                    realm = a.challenge.realm(),
                    "a challenge the gateway's credentials cannot answer"
                );
                return false;
            };
            header.push_str(&h);
        }
        // The request with its credentials (and siplb's Via and Record-Route) must still fit
        // a UDP datagram; when it would not, the challenge goes to the caller at once.
        if received.len() + header.len() + FORWARD_GROWTH > MAX_UDP_PAYLOAD {
            tracing::warn!(
                bytes = received.len() + header.len(),
                "uac: the request with its credentials would not fit a datagram; the \
                 challenge goes to the caller"
            );
            return false;
        }
        let initial = dialog
            .and_then(|d| self.dialogs.get(d))
            .is_some_and(|d| d.invite == Some(id));
        // A PRACK names its INVITE by the number the gateway saw: the dialog's shift.
        let rack_shift = match msg.method() {
            Some(crate::sip::Method::Prack) => dialog
                .and_then(|d| self.dialogs.get(d))
                .map_or(0, |d| d.cseq_shift),
            _ => 0,
        };
        let fwd = Forward {
            record_route: if initial { dialog } else { None },
            strip_route: ingress::own_route(&msg, self.cfg.local),
            cseq: Some(msg.cseq.wrapping_add(shift)),
            rack_shift,
            headers: header.as_bytes(),
            ..Forward::default()
        };
        let Some(out) = self.next_attempt(now, id, &msg, upstream.addr, fwd) else {
            return false;
        };
        if let Some(d) = dialog.and_then(|d| self.dialogs.get_mut(d)) {
            d.cseq_shift = d.cseq_shift.max(shift);
        }
        let timers = self.cfg.timers;
        let timer_b = match (initial, dialog) {
            (true, Some(d)) => self.attempt_timeout(d),
            _ => timers.timer_b,
        };
        let t = self.txns.get_mut(id).expect("looked up above");
        t.forwarded.clear();
        t.forwarded.extend_from_slice(&out);
        t.ack.clear();
        t.cseq_shift = shift;
        t.caller_cseq = msg.cseq;
        t.auth_tries += 1;
        t.challenges = Some(Box::new(answered));
        match kind {
            Kind::Invite => machine::restart_client_invite(t, now, &timers, timer_b),
            Kind::NonInvite => machine::restart_client_non_invite(t, now, &timers),
        }
        self.stats.fwd_requests.inc();
        self.out.send(dst, out);
        self.reschedule(id);
        true
    }

    /// A response to transaction `id` left unanswered (passed to the caller, or to a request
    /// of siplb's own): a challenge from a gateway siplb has credentials for is counted and,
    /// at most every 10 s, said in the log.
    pub(super) fn challenge_given_up(&mut self, now: Instant, id: TxnId, msg: &SipMsg<'_>) {
        let Some(status @ (401 | 407)) = msg.status() else {
            return;
        };
        let Some(t) = self.txns.get(id) else {
            return;
        };
        let gateway = t.downstream.addr;
        if self.credentials(t.dialog, gateway).is_none() {
            return;
        }
        self.stats.auth_failures.inc();
        if self
            .auth_warned
            .is_none_or(|at| now >= at + Duration::from_secs(10))
        {
            self.auth_warned = Some(now);
            tracing::warn!(
                %gateway,
                "uac: the gateway's {status} was left unanswered: a second challenge (are its \
                 user and password right?) or one siplb cannot answer; counted in \
                 uac:auth_failures"
            );
        }
    }

    /// A BYE of siplb's own (ending a call: an operator, a timeout, a stop, a late 2xx)
    /// challenged by a gateway it has credentials for: the same BYE again with credentials,
    /// CSeq + 1 and a new branch, in a transaction of its own. As for a forwarded request:
    /// one resend per realm, one more for a stale nonce, every realm met so far answered again
    /// (an SBC's 407, then the softswitch's 401), up to [`MAX_REALMS`]. Whether it went.
    pub(super) fn authenticate_local(&mut self, now: Instant, id: TxnId, msg: &SipMsg<'_>) -> bool {
        let Some(t) = self.txns.get(id) else {
            return false;
        };
        if !t.local_request || t.method != crate::sip::Method::Bye {
            return false;
        }
        let (dst, dialog) = (t.downstream, t.dialog);
        let mut answered: Vec<Answered> = t.challenges.as_deref().cloned().unwrap_or_default();
        let set = self.set_of(dialog);
        let Some(creds) = self.cfg.routing.gateways.credentials_of(set, dst.addr) else {
            return false;
        };
        let Some(ch) = auth::challenge_for(msg, creds) else {
            return false;
        };
        let count = answered.len();
        match answered.iter_mut().find(|a| a.challenge.same_realm(&ch)) {
            Some(a) if ch.stale() && !a.renewed => {
                a.challenge = ch;
                a.uses = 0;
                a.renewed = true;
            }
            Some(_) => return false,
            None if count < MAX_REALMS => answered.push(Answered {
                challenge: ch,
                uses: 0,
                renewed: false,
            }),
            None => return false,
        }
        let creds = creds.clone();
        let sent = std::mem::take(&mut self.txns.get_mut(id).expect("found above").forwarded);
        let made = self.local_with_credentials(&sent, &mut answered, &creds);
        if let Some(t) = self.txns.get_mut(id) {
            t.forwarded = sent;
        }
        let Some((branch, out)) = made else {
            return false;
        };
        let again =
            self.send_local_request(now, crate::sip::Method::Bye, dst, &branch, dialog, out);
        if let Some(t) = self.txns.get_mut(again) {
            t.auth_tries = u8::try_from(answered.len()).unwrap_or(u8::MAX);
            t.challenges = Some(Box::new(answered));
        }
        self.stats.auth_resends.inc();
        true
    }

    /// The request `sent` (siplb's own) again, answering every challenge in `answered`: its
    /// branch and CSeq number changed, the credentials it carried replaced. None when it
    /// cannot be.
    fn local_with_credentials(
        &mut self,
        sent: &[u8],
        answered: &mut [Answered],
        creds: &crate::proxy::gateway::Credentials,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let req = SipMsg::parse(sent).ok()?;
        let cseq = req.cseq.checked_add(1).filter(|c| *c < 1 << 31)?;
        let old = req.branch()?;
        let at = old.as_ptr() as usize - sent.as_ptr() as usize;
        let mut header = String::new();
        for a in answered.iter_mut() {
            a.uses += 1;
            header.push_str(&answer(
                &mut self.branches,
                &a.challenge,
                creds,
                "BYE",
                &req,
                a.uses,
            )?);
        }
        let mut branch = Vec::with_capacity(48);
        self.branches.next(&mut branch);
        let rw = &mut self.rewrite;
        rw.clear();
        rw.replace(at, at + old.len(), |o| o.extend_from_slice(&branch));
        crate::proxy::forward::rewrite_cseq(&req, cseq, rw);
        for h in req.headers() {
            let name = h.name_bytes(req.buf);
            if name.eq_ignore_ascii_case(b"Authorization")
                || name.eq_ignore_ascii_case(b"Proxy-Authorization")
            {
                let line = h.line();
                rw.replace(line.start as usize, line.end as usize, |_| {});
            }
        }
        rw.insert(req.headers_end as usize, |o| {
            o.extend_from_slice(header.as_bytes())
        });
        let mut out = self.out.buffer();
        rw.apply(sent, sent.len(), &mut out);
        SipMsg::parse(&out).ok()?;
        Some((branch, out))
    }
}

/// The header that answers `ch` for request `req` (`method` as its request line writes it)
/// with `creds`, a fresh client nonce taken from `branches`, the `nc`-th answer to its nonce.
fn answer(
    branches: &mut Branches,
    ch: &Challenge,
    creds: &crate::proxy::gateway::Credentials,
    method: &str,
    req: &SipMsg<'_>,
    nc: u32,
) -> Option<String> {
    let uri = req.request_uri().map_or(&b""[..], |u| u.of(req.buf));
    let uri = String::from_utf8_lossy(uri);
    let mut cnonce = Vec::with_capacity(48);
    branches.next(&mut cnonce);
    let cnonce = String::from_utf8_lossy(&cnonce[cnonce.len().saturating_sub(16)..]);
    let body = req.body.of(req.buf);
    auth::authorization(ch, creds, method, &uri, &cnonce, nc, body)
}
