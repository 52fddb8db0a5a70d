//! The typed events a shard hands out ([`Shard::poll_event`](super::Shard::poll_event)): the
//! outcome of each transaction and the whole story of each dialog, with the facts accounting
//! needs. They are plain values; encoding them (the `Call_End` JSON, CDR files) happens
//! outside the core.

use super::dialogs::{Dialog, DialogTimes, EndCause, Outcome, Side};
use super::ids::DialogId;
use super::target::Target;
use crate::sip::value::{Params, SipUri};
use crate::sip::{Method, SipMsg, Span};

/// Which events a shard emits (each costs a little per call or transaction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Emit {
    /// [`Event::Transaction`] for each transaction that completes.
    pub transactions: bool,
    /// [`Event::Dialog`] for each dialog that ends and each INVITE a limit refused.
    pub dialogs: bool,
    /// What the call log needs, whatever `dialogs` says: [`Event::Refused`] for each new
    /// INVITE answered with an error without a transaction (403 to an unknown source, the
    /// overload 503 …), and [`Event::Dialog`] for each INVITE a limit refused, each dialog
    /// that failed, and each answered dialog siplb ended (operator, timeout).
    pub failures: bool,
    /// [`Event::Request`] for each request that starts a transaction or is an ACK of a
    /// dialog (accounting rules record requests on receipt).
    pub requests: bool,
    /// Of those, only the methods in these bits (`1 << Method as u32`); 0: every method.
    pub transaction_methods: u32,
    pub request_methods: u32,
}

impl Emit {
    /// Whether the outcome of a transaction of `m` is reported.
    pub fn transaction(&self, m: Method) -> bool {
        self.transactions
            && (self.transaction_methods == 0 || self.transaction_methods & (1 << m as u32) != 0)
    }

    /// Whether a request of `m` is reported on receipt.
    pub fn request(&self, m: Method) -> bool {
        self.requests && (self.request_methods == 0 || self.request_methods & (1 << m as u32) != 0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Transaction(Box<TxnOutcome>),
    Dialog(Box<DialogRecord>),
    Refused(Box<Refused>),
    /// A request as it was received (retransmissions excluded): its `code` is none, its
    /// `at_ms` the time of receipt, its account and gateway those of its dialog.
    Request(Box<TxnOutcome>),
    /// Probing took a gateway down or brought it back up.
    Gateway(GatewayChange),
}

/// A gateway probing took down or brought back up, and the probe that did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayChange {
    pub gateway: std::net::SocketAddr,
    pub up: bool,
    pub outcome: super::health::Outcome,
}

/// A new INVITE siplb answered with an error without keeping a transaction or a dialog: 403
/// (unknown source), 503 (overload, no gateway), 482, 483, 420 …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub parties: Parties,
    pub source: Target,
    /// The account, when admission got as far as knowing it (empty otherwise).
    pub account: Box<str>,
    pub code: u16,
    pub reason: Box<str>,
}

/// Who ended an answered dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    Caller,
    Callee,
    Timeout,
    Operator,
    Shutdown,
}

impl EndedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Callee => "callee",
            EndedBy::Timeout => "timeout",
            EndedBy::Operator => "operator",
            EndedBy::Shutdown => "shutdown",
        }
    }
}

/// What a request says about who calls whom, as text: the Call-ID, the From tag, From user
/// and host (Kamailio's `src_user`, `src_domain`), To user (`dst_ouser`), Request-URI user
/// and host (`dst_user`, `dst_domain`). The seven share one string: events are made for
/// every call, and one allocation is cheaper than seven (`acc/shard` in
/// docs/BENCHMARKS.md, "Accounting").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    text: String,
    /// Where each part ends in `text`, in the order above.
    ends: [u32; PARTS],
}

const PARTS: usize = 7;

/// Builds [`Parties`] a part at a time, in their order: the parts' bytes go into one buffer,
/// checked as UTF-8 once at the end (nearly always they are ASCII); only when that fails is
/// each part made text on its own ([`as_text`]).
struct PartsBuilder {
    raw: Vec<u8>,
    ends: [u32; PARTS],
    n: usize,
}

impl PartsBuilder {
    fn new(capacity: usize) -> PartsBuilder {
        PartsBuilder {
            raw: Vec::with_capacity(capacity),
            ends: [0; PARTS],
            n: 0,
        }
    }

    fn push(&mut self, b: &[u8]) {
        self.raw.extend_from_slice(b);
        self.ends[self.n] = self.raw.len() as u32;
        self.n += 1;
    }

    /// The user and (with `host`) the host of `uri` ([`SipUri::user_and_host`]: a `tel:`
    /// URI's user is its number as written, up to its parameters, and it has no host).
    fn push_user_host(&mut self, buf: &[u8], uri: Option<Span>, host: bool) {
        let (user, h) = uri.map_or((&b""[..], &b""[..]), |u| SipUri::user_and_host(buf, u));
        self.push(user);
        if host {
            self.push(h);
        }
    }

    fn finish(self) -> Parties {
        debug_assert_eq!(self.n, PARTS);
        let ends = self.ends;
        match String::from_utf8(self.raw) {
            // Each part on its own is UTF-8 too when every end is a character's boundary.
            Ok(text) if ends.iter().all(|&e| text.is_char_boundary(e as usize)) => {
                Parties { text, ends }
            }
            Ok(text) => Parties::escaped(text.as_bytes(), &ends),
            Err(e) => Parties::escaped(e.as_bytes(), &ends),
        }
    }
}

/// Bytes of a message as text: as they are when they are UTF-8 (nearly always, SIP being
/// ASCII), else each byte that is not written `%XX` (RFC 3986's escape, as a URI would
/// carry it): two callers whose users differ only in such bytes stay apart in the records,
/// as they are in the profiles, where U+FFFD would have made them one.
fn as_text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => s.into(),
        Err(_) => {
            use std::fmt::Write;
            let mut out = String::with_capacity(b.len() + 8);
            for chunk in b.utf8_chunks() {
                out.push_str(chunk.valid());
                for byte in chunk.invalid() {
                    let _ = write!(out, "%{byte:02X}");
                }
            }
            out.into()
        }
    }
}

/// [`as_text`], owned.
pub(crate) fn text(b: &[u8]) -> Box<str> {
    as_text(b).into()
}

impl Parties {
    pub fn new(
        call_id: &str,
        from_tag: &str,
        from_user: &str,
        from_domain: &str,
        to_user: &str,
        ruri_user: &str,
        ruri_host: &str,
    ) -> Parties {
        let parts = [
            call_id,
            from_tag,
            from_user,
            from_domain,
            to_user,
            ruri_user,
            ruri_host,
        ];
        let mut b = PartsBuilder::new(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            b.push(p.as_bytes());
        }
        b.finish()
    }

    /// The parts of `raw` (ending at `ends`), each made text on its own ([`as_text`]).
    fn escaped(raw: &[u8], ends: &[u32; PARTS]) -> Parties {
        let mut text = String::with_capacity(raw.len() + 16);
        let mut out = [0; PARTS];
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            text.push_str(&as_text(&raw[start..end as usize]));
            out[i] = text.len() as u32;
            start = end as usize;
        }
        Parties { text, ends: out }
    }

    /// From a request.
    pub fn of_request(msg: &SipMsg<'_>) -> Parties {
        let mut b = PartsBuilder::new(160);
        b.push(msg.call_id());
        b.push(msg.from_tag().unwrap_or(b""));
        let (user, host) = msg.from_user_host();
        b.push(user);
        b.push(host);
        b.push(msg.to_user_host().0);
        let (user, host) = msg.request_user_host();
        b.push(user);
        b.push(host);
        b.finish()
    }

    /// From what a dialog keeps of its INVITE.
    fn of_dialog(d: &Dialog) -> Parties {
        let uri = |v: &[u8]| {
            crate::sip::value::NameAddr::locate(v, Span::new(0, v.len())).map(|na| na.uri)
        };
        let mut b = PartsBuilder::new(160);
        b.push(&d.call_id);
        b.push(d.caller_tag());
        b.push_user_host(&d.from, uri(&d.from), true);
        b.push_user_host(&d.to, uri(&d.to), false);
        b.push_user_host(
            &d.request_uri,
            Some(Span::new(0, d.request_uri.len())),
            true,
        );
        b.finish()
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start as usize..self.ends[i] as usize]
    }

    pub fn call_id(&self) -> &str {
        self.part(0)
    }

    pub fn from_tag(&self) -> &str {
        self.part(1)
    }

    /// From user (`src_user`).
    pub fn from_user(&self) -> &str {
        self.part(2)
    }

    /// From host (`src_domain`).
    pub fn from_domain(&self) -> &str {
        self.part(3)
    }

    /// To user (`dst_ouser`).
    pub fn to_user(&self) -> &str {
        self.part(4)
    }

    /// Request-URI user (`dst_user`).
    pub fn ruri_user(&self) -> &str {
        self.part(5)
    }

    /// Request-URI host (`dst_domain`).
    pub fn ruri_host(&self) -> &str {
        self.part(6)
    }
}

/// A transaction's outcome: the final reply sent back (relayed or siplb's own), or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    pub dialog: Option<DialogId>,
    pub method: Method,
    pub parties: Parties,
    /// The To tag of the final reply (or of the request, when it had one).
    pub to_tag: Box<str>,
    /// The request had a To tag: it went inside a dialog (a re-INVITE, a BYE), rather than
    /// making one.
    pub in_dialog: bool,
    /// Where the request came from, and where it was forwarded (none for siplb's own reply).
    pub source: Target,
    pub destination: Option<Target>,
    /// The account and gateway of the dialog the transaction belongs to (empty, none
    /// outside a dialog).
    pub account: Box<str>,
    pub gateway: Option<Target>,
    /// The final status; none when no final reply came (a non-INVITE timed out).
    pub code: Option<u16>,
    pub reason: Box<str>,
    pub q850_cause: Option<u16>,
    /// siplb made the final reply itself (408, 487, a limit reply).
    pub local: bool,
    /// Unix ms of the final reply (or of the timeout).
    pub at_ms: u64,
}

/// Everything about one call: an ended dialog, or an INVITE a limit refused (no dialog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogRecord {
    /// None for an INVITE a limit refused.
    pub id: Option<DialogId>,
    pub parties: Parties,
    /// The To tag of the answer (empty when never answered).
    pub to_tag: Box<str>,
    /// From and To header values (the To of the answer once there is one).
    pub from: Box<str>,
    pub to: Box<str>,
    pub caller: Target,
    /// The trunk: the gateway the call went to, or (inbound) came from; none when no gateway
    /// was chosen (a refused INVITE).
    pub gateway: Option<Target>,
    /// A call from a gateway to a customer.
    pub inbound: bool,
    pub account: Box<str>,
    pub times: DialogTimes,
    /// Gateways tried (failover moves a call on to the next gateway of its set).
    pub attempts: u32,
    /// The final reply to the INVITE; the Q.850 cause of that reply or of the ending BYE.
    pub outcome: Outcome,
    /// siplb refused the INVITE for a profile limit.
    pub limit_refused: bool,
    pub answered: bool,
    /// Who ended an answered dialog.
    pub ended_by: Option<EndedBy>,
    /// Who had the INVITE cancelled before the answer (the first to ask), if anyone.
    pub cancelled_by: Option<EndedBy>,
    pub vars: Vec<(Box<str>, Box<str>)>,
}

impl DialogRecord {
    /// The record of an ended dialog. Its variables move into the record: nothing reads them
    /// after the end (`dlg.list` shows no ended dialog, the restart journal notes only its
    /// Call-ID), and a copy of each would cost the worker two allocations per call.
    pub fn of(id: DialogId, d: &mut Dialog) -> DialogRecord {
        let ended_by = match (d.answered, d.end_cause) {
            (None, _) | (_, None) | (_, Some(EndCause::Failed)) => None,
            (_, Some(EndCause::Bye(Side::Caller))) => Some(EndedBy::Caller),
            (_, Some(EndCause::Bye(Side::Callee))) => Some(EndedBy::Callee),
            (_, Some(EndCause::Expired)) => Some(EndedBy::Timeout),
            (_, Some(EndCause::Operator)) => Some(EndedBy::Operator),
            (_, Some(EndCause::Shutdown)) => Some(EndedBy::Shutdown),
        };
        let parties = match d.parties.take() {
            Some(p) => *p,
            None => Parties::of_dialog(d),
        };
        DialogRecord {
            id: Some(id),
            parties,
            to_tag: text(d.callee_tag().unwrap_or(b"")),
            from: text(&d.from),
            to: text(&d.to),
            caller: d.caller,
            gateway: Some(d.trunk()),
            inbound: d.inbound,
            account: text(&d.account),
            times: d.times,
            attempts: d.tried.len() as u32,
            outcome: d.outcome.clone(),
            limit_refused: false,
            answered: d.answered.is_some(),
            ended_by,
            cancelled_by: d.cancelled_by,
            vars: std::mem::take(&mut d.vars),
        }
    }
}

/// The reason phrase of a response.
pub fn reason_of(msg: &SipMsg<'_>) -> Box<str> {
    let line = msg.start_line.of(msg.buf);
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // "SIP/2.0 486 Busy Here": the phrase starts after the second space.
    let phrase = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(b"");
    text(phrase)
}

/// The cause of the first `Reason: Q.850;cause=N` header of `msg` (RFC 3326) whose cause is
/// one Q.850 can carry (1 to 127, seven bits); another is not recorded.
pub fn q850_cause(msg: &SipMsg<'_>) -> Option<u16> {
    let buf = msg.buf;
    msg.headers()
        .iter()
        // A header siplb names is not a Reason; of the others, only a line starting with
        // R can be one (this runs for every final reply, nearly all without one).
        .filter(|h| {
            h.name == crate::sip::HeaderName::Other
                && h.line().of(buf).first().map(u8::to_ascii_lowercase) == Some(b'r')
                && h.name_bytes(buf).eq_ignore_ascii_case(b"Reason")
        })
        .flat_map(|h| crate::sip::value::CommaList::new(buf, h.value()).filter_map(Result::ok))
        .find_map(|el| {
            let v = el.of(buf);
            let semi = v.iter().position(|&b| b == b';')?;
            let proto = v[..semi].trim_ascii();
            if !proto.eq_ignore_ascii_case(b"Q.850") {
                return None;
            }
            let params = Span::new(el.start as usize + semi, el.end as usize);
            Params::new(buf, params).find_map(|(n, val)| {
                if !n.of(buf).eq_ignore_ascii_case(b"cause") {
                    return None;
                }
                let v = val.of(buf);
                if !v.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(v)
                    .ok()?
                    .parse()
                    .ok()
                    .filter(|c| (1..=127).contains(c))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SipMsg<'_> {
        SipMsg::parse(text.as_bytes()).unwrap()
    }

    const BUSY: &str = "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
        From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
        Reason: SIP;cause=486, Q.850 ;cause=17;text=\"busy\"\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn reason_phrase_and_q850_cause_are_read_from_a_reply() {
        let m = parse(BUSY);
        assert_eq!(&*reason_of(&m), "Busy Here");
        assert_eq!(q850_cause(&m), Some(17));
    }

    #[test]
    fn a_cause_q850_cannot_carry_is_not_recorded_and_the_next_one_is() {
        for bad in ["0", "128", "65535", "99999", "-1", "+17", "abc", ""] {
            let text = BUSY.replace("Q.850 ;cause=17", &format!("Q.850;cause={bad}"));
            assert_eq!(q850_cause(&parse(&text)), None, "cause={bad}");
        }
        let text = BUSY.replace("Q.850 ;cause=17", "Q.850;cause=0, Q.850;cause=127");
        assert_eq!(q850_cause(&parse(&text)), Some(127));
    }

    #[test]
    fn no_q850_reason_means_no_cause() {
        let text = BUSY.replace("Q.850 ;cause=17", "X;cause=17");
        let m = parse(&text);
        assert_eq!(q850_cause(&m), None);
    }

    #[test]
    fn parties_of_an_invite() {
        let m = parse(
            "INVITE sip:0044123@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: \"A\" <sip:alice@cust.example>;tag=f1\r\nTo: <sip:bob@dest.example>\r\n\
             Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let p = Parties::of_request(&m);
        assert_eq!(
            (p.call_id(), p.from_tag(), p.from_user(), p.from_domain()),
            ("call-1", "f1", "alice", "cust.example")
        );
        assert_eq!(
            (p.to_user(), p.ruri_user(), p.ruri_host()),
            ("bob", "0044123", "gw.example")
        );
        assert_eq!(
            p,
            Parties::new(
                "call-1",
                "f1",
                "alice",
                "cust.example",
                "bob",
                "0044123",
                "gw.example"
            )
        );
        // A tel: URI's user is its number, without a host; a URI of another scheme leaves
        // its parts empty, the others in place.
        let m = parse(
            "INVITE tel:+44-20-7946;phone-context=+44 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:alice@cust.example>;tag=f1\r\nTo: <TEL:+4412>\r\n\
             Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let p = Parties::of_request(&m);
        assert_eq!(
            (p.from_domain(), p.to_user(), p.ruri_user(), p.ruri_host()),
            ("cust.example", "+4412", "+44-20-7946", "")
        );
        let m = parse(
            "INVITE sip:0044123@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:alice@cust.example>;tag=f1\r\nTo: <urn:service:sos>\r\n\
             Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let p = Parties::of_request(&m);
        assert_eq!(
            (p.from_domain(), p.to_user(), p.ruri_user()),
            ("cust.example", "", "0044123")
        );
    }

    #[test]
    fn a_character_split_between_two_parts_is_escaped_in_each() {
        let mut b = PartsBuilder::new(8);
        b.push(b"a\xc3");
        b.push(b"\xa9b");
        for _ in 2..PARTS {
            b.push(b"");
        }
        let p = b.finish();
        assert_eq!((p.call_id(), p.from_tag()), ("a%C3", "%A9b"));
        let mut b = PartsBuilder::new(8);
        for part in [&b"ren\xc3\xa9"[..], b"x\xff", b"", b"d", b"e", b"f", b"g"] {
            b.push(part);
        }
        let p = b.finish();
        assert_eq!(
            (p.call_id(), p.from_tag(), p.from_user(), p.ruri_host()),
            ("ren\u{e9}", "x%FF", "", "g")
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_escaped_and_stay_apart() {
        assert_eq!(&*text(b"ren\xc3\xa9"), "ren\u{e9}", "UTF-8 as it is");
        assert_eq!(&*text(b"ren\xe9\xff"), "ren%E9%FF");
        assert_eq!(&*text(b"ren\xe9\xfe"), "ren%E9%FE");
        assert_eq!(&*text(b"\xff\xc3\xa9x\x80"), "%FF\u{e9}x%80");
    }
}
