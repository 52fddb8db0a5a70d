//! Transaction tests of the shard on a virtual clock: a caller (a customer at 127.0.0.1:5070),
//! siplb (127.0.0.1:5060) and two gateways (127.0.0.1:5081, 127.0.0.1:5082). Messages are
//! written as text, what siplb sends is parsed back and checked: where it goes, what it is, and
//! the headers a proxy is responsible for.

use super::*;
use crate::proxy::ServerState;
use crate::proxy::{AccountKey, ClientState, Customer, DialogTimers, LimitReply, Routing};
use crate::sip::HeaderName;
use crate::sip::value::CommaList;
use std::fmt;
use std::time::Duration;

// ------------------------------------------------------------------------------- harness

fn caller() -> SocketAddr {
    "127.0.0.1:5070".parse().unwrap()
}

fn gw1() -> SocketAddr {
    "127.0.0.1:5081".parse().unwrap()
}

fn gw2() -> SocketAddr {
    "127.0.0.1:5082".parse().unwrap()
}

fn local() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

/// Nobody siplb knows.
fn stranger() -> SocketAddr {
    "192.0.2.9:5060".parse().unwrap()
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const T4: Duration = Duration::from_secs(5);
const MS: Duration = Duration::from_millis(1);

fn t1s(n: u32) -> Duration {
    T1 * n
}

/// A datagram siplb sent, kept as bytes and parsed on demand.
struct Out {
    dst: SocketAddr,
    data: Vec<u8>,
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "to {}:\n{}", self.dst, self.text())
    }
}

impl Out {
    fn msg(&self) -> SipMsg<'_> {
        SipMsg::parse(&self.data)
            .unwrap_or_else(|e| panic!("siplb sent something unparsable ({e}): {self:?}"))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    fn first_line(&self) -> String {
        self.text().lines().next().unwrap_or("").to_string()
    }

    fn status(&self) -> Option<u16> {
        self.msg().status()
    }

    fn method(&self) -> Option<Method> {
        self.msg().method()
    }

    fn is_request(&self, m: Method) -> bool {
        self.method() == Some(m)
    }

    fn is_response(&self, code: u16) -> bool {
        self.status() == Some(code)
    }

    fn branch(&self) -> String {
        lossy(self.msg().branch().unwrap_or(b""))
    }

    fn request_uri(&self) -> String {
        let m = self.msg();
        lossy(m.request_uri().map_or(&b""[..], |u| m.span(u)))
    }

    fn cseq(&self) -> (u32, Method) {
        let m = self.msg();
        (m.cseq, m.cseq_method)
    }

    fn call_id(&self) -> String {
        lossy(self.msg().call_id())
    }

    fn to_tag(&self) -> Option<String> {
        self.msg().to_tag().map(lossy)
    }

    /// Values of every header with this name, one per header line.
    fn headers(&self, name: HeaderName) -> Vec<String> {
        let m = self.msg();
        m.headers_named(name)
            .map(|(_, h)| lossy(h.value().of(m.buf)))
            .collect()
    }

    fn header(&self, name: HeaderName) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The first header whose name is written `name` (any case), for headers the parser has
    /// no name for.
    fn named(&self, name: &str) -> Option<String> {
        let m = self.msg();
        m.headers()
            .iter()
            .find(|h| h.name_bytes(m.buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| lossy(h.value().of(m.buf)))
    }

    /// Whole header lines with this name, as sent.
    fn header_lines(&self, name: HeaderName) -> Vec<String> {
        let m = self.msg();
        m.headers_named(name)
            .map(|(_, h)| lossy(h.line().of(m.buf)))
            .collect()
    }

    fn vias(&self) -> Vec<String> {
        let m = self.msg();
        m.headers_named(HeaderName::Via)
            .flat_map(|(_, h)| {
                CommaList::new(m.buf, h.value()).map(|e| lossy(e.unwrap().of(m.buf)))
            })
            .collect()
    }

    fn max_forwards(&self) -> Option<u32> {
        self.msg().max_forwards.map(|(v, _)| v)
    }

    fn body(&self) -> Vec<u8> {
        let m = self.msg();
        m.span(m.body).to_vec()
    }

    /// Content-Length is there and frames exactly the bytes after the headers.
    #[track_caller]
    fn assert_content_length(&self) {
        let m = self.msg();
        let (cl, _) = m
            .content_length
            .unwrap_or_else(|| panic!("no Content-Length: {self:?}"));
        let after_headers = self.data.len() - (m.headers_end as usize + 2);
        assert_eq!(
            cl as usize, after_headers,
            "Content-Length is wrong: {self:?}"
        );
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The URI inside `<...>` (or the whole value when there are no brackets).
fn uri_of(name_addr: &str) -> String {
    match (name_addr.find('<'), name_addr.find('>')) {
        (Some(a), Some(b)) => name_addr[a + 1..b].to_string(),
        _ => name_addr.split(';').next().unwrap().to_string(),
    }
}

fn param_of(v: &str, name: &str) -> Option<String> {
    v.split(';').skip(1).find_map(|p| {
        let (n, val) = p.split_once('=').unwrap_or((p, ""));
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| val.trim().to_string())
    })
}

/// The shard between a caller and two gateways, on a virtual clock.
struct Harness {
    shard: Shard,
    /// `Call_End` events taken from the shard so far.
    call_ends: Vec<String>,
    stats: Arc<ShardStats>,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(|_| {})
    }

    fn with_config(f: impl FnOnce(&mut ProxyConfig)) -> Harness {
        let routing = Routing {
            customers: vec![Customer {
                name: "acme".into(),
                sources: vec!["127.0.0.1/32".parse().unwrap()],
                domains: vec![],
                account_key: AccountKey::FromUser,
                numbers: Vec::new(),
                targets: Vec::new(),
            }],
            gateways: vec![gw1(), gw2()].into(),
        };
        let mut cfg = ProxyConfig::new(local(), routing);
        // The tests of one attempt see its own timeouts and replies; `failover.rs` turns it on.
        cfg.routing.gateways.sets[0].failover = false;
        f(&mut cfg);
        let stats = Arc::new(ShardStats::default());
        let shard = Shard::new(Arc::new(cfg), 0, stats.clone());
        let t0 = Instant::now();
        Harness {
            shard,
            call_ends: Vec::new(),
            stats,
            t0,
            now: t0,
        }
    }

    /// Time since the start.
    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// One datagram from `src` at the current time.
    fn deliver(&mut self, src: SocketAddr, text: &str) {
        self.deliver_bytes(src, text.as_bytes());
    }

    fn deliver_bytes(&mut self, src: SocketAddr, data: &[u8]) {
        self.shard.handle(self.now, src, data);
    }

    fn caller_sends(&mut self, text: &str) {
        self.deliver(caller(), text);
    }

    /// Moves the clock `d` forward, running the shard's timers at each deadline on the way,
    /// in order.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(at) = self.shard.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.shard.handle_timeout(self.now);
        }
        self.now = end;
    }

    /// Moves the clock to `t0 + at`.
    fn advance_to(&mut self, at: Duration) {
        let target = self.t0 + at;
        assert!(target >= self.now, "the clock does not go back");
        self.advance(target - self.now);
    }

    /// Jumps to the next deadline and runs it; false when nothing is scheduled.
    fn step(&mut self) -> bool {
        match self.shard.poll_timeout() {
            Some(at) => {
                self.now = self.now.max(at);
                self.shard.handle_timeout(self.now);
                true
            }
            None => false,
        }
    }

    /// Runs timers until none is left (bounded, so a timer that keeps rescheduling fails).
    fn drive(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("timers never settle");
    }

    /// The `Call_End` events (JSON) of the dialogs that ended so far, as the worker encodes
    /// them (answered dialogs only).
    fn call_ends(&mut self) -> Vec<String> {
        while let Some(e) = self.shard.poll_event() {
            if let Event::Dialog(r) = e
                && r.answered
            {
                self.call_ends.push(crate::events::call_end_json(&r));
            }
        }
        self.call_ends.clone()
    }

    /// Everything siplb sent since the last call.
    fn take(&mut self) -> Vec<Out> {
        std::iter::from_fn(|| self.shard.poll_transmit())
            .map(|t| Out {
                dst: t.dst.addr,
                data: t.data,
            })
            .collect()
    }

    /// Exactly one datagram was sent: that one.
    #[track_caller]
    fn take_one(&mut self) -> Out {
        let mut out = self.take();
        assert_eq!(out.len(), 1, "expected one datagram, got {out:#?}");
        out.pop().unwrap()
    }

    #[track_caller]
    fn expect_nothing(&mut self) {
        let out = self.take();
        assert!(out.is_empty(), "expected nothing sent, got {out:#?}");
    }

    /// Sends `inv` from the caller; returns the 100 Trying the caller got and the INVITE the
    /// gateway got.
    #[track_caller]
    fn start_call(&mut self, inv: &Req) -> (Out, Out) {
        self.caller_sends(&inv.text());
        let mut out = self.take();
        assert_eq!(
            out.len(),
            2,
            "expected 100 and the forwarded INVITE, got {out:#?}"
        );
        let fwd = out.pop().unwrap();
        let trying = out.pop().unwrap();
        assert_eq!(trying.dst, caller());
        assert!(trying.is_response(100), "{trying:?}");
        assert!(fwd.is_request(Method::Invite), "{fwd:?}");
        assert!(fwd.dst == gw1() || fwd.dst == gw2(), "{fwd:?}");
        (trying, fwd)
    }

    /// The gateway sends `resp` (a response to `fwd`) and siplb passes it to the caller.
    #[track_caller]
    fn gateway_answers(&mut self, fwd: &Out, resp: &str) -> Out {
        self.deliver(fwd.dst, resp);
        let out = self.take_one();
        assert_eq!(out.dst, caller(), "{out:?}");
        out
    }

    /// INVITE, 180, 200 and the ACK for it: an established call.
    #[track_caller]
    fn established_call(&mut self, call_id: &str) -> Established {
        let inv = invite(call_id, &format!("z9hG4bK-inv-{call_id}"));
        let (_, fwd) = self.start_call(&inv);
        self.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
        let ok = self.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
        self.caller_sends(&ack_2xx(&ok, &format!("z9hG4bK-ack-{call_id}")).text());
        let ack = self.take_one();
        assert!(ack.is_request(Method::Ack), "{ack:?}");
        assert_eq!(ack.dst, fwd.dst);
        Established { fwd, ok }
    }

    /// (method, server state, client state) of each live transaction.
    fn txn_states(&self) -> Vec<(Method, ServerState, ClientState)> {
        self.shard
            .txns
            .iter()
            .map(|t| (t.method, t.server, t.client))
            .collect()
    }

    /// The states of the one live transaction for `method` that came from upstream.
    #[track_caller]
    fn txn(&self, method: Method) -> (ServerState, ClientState) {
        let found: Vec<_> = self
            .shard
            .txns
            .iter()
            .filter(|t| t.method == method && !t.local_request)
            .map(|t| (t.server, t.client))
            .collect();
        assert_eq!(found.len(), 1, "{:?}", self.txn_states());
        found[0]
    }

    fn call_state(&self, call_id: &str) -> Option<DialogState> {
        self.shard.dialog(call_id.as_bytes()).map(|c| c.state)
    }
}

/// A call after INVITE / 200 / ACK.
struct Established {
    /// The INVITE as the gateway got it.
    fwd: Out,
    /// The 200 as the caller got it.
    ok: Out,
}

impl Established {
    fn gateway(&self) -> SocketAddr {
        self.fwd.dst
    }
}

// ------------------------------------------------------------------------------ messages

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// A request as text, field by field; tests change the fields they are about.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    uri: String,
    /// Via header values, top first.
    vias: Vec<String>,
    max_forwards: Option<u32>,
    routes: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    /// Extra header lines, each ending in CRLF.
    extra: String,
    body: String,
    content_length: bool,
}

impl Req {
    fn text(&self) -> String {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        for v in &self.vias {
            s += &format!("Via: {v}\r\n");
        }
        if let Some(mf) = self.max_forwards {
            s += &format!("Max-Forwards: {mf}\r\n");
        }
        for r in &self.routes {
            s += &format!("Route: {r}\r\n");
        }
        s += &format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\n",
            self.from, self.to, self.call_id
        );
        s += &format!("CSeq: {} {}\r\n", self.cseq, self.method);
        s += &self.extra;
        if !self.body.is_empty() {
            s += "Content-Type: application/sdp\r\n";
        }
        if self.content_length {
            s += &format!("Content-Length: {}\r\n", self.body.len());
        }
        s += "\r\n";
        s += &self.body;
        s
    }

    fn branch(&self) -> String {
        param_of(&self.vias[0], "branch").unwrap()
    }
}

/// An initial INVITE from the caller.
fn invite(call_id: &str, branch: &str) -> Req {
    Req {
        method: "INVITE",
        uri: "sip:+15551234@127.0.0.1:5060".into(),
        vias: vec![format!("SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport")],
        max_forwards: Some(70),
        routes: vec![],
        from: "\"Alice\" <sip:alice@customer.example>;tag=alice-tag".into(),
        to: "<sip:+15551234@carrier.example>".into(),
        call_id: call_id.into(),
        cseq: 1,
        extra: "Contact: <sip:alice@127.0.0.1:5070>\r\n".into(),
        body: SDP.into(),
        content_length: true,
    }
}

/// The caller's CANCEL for `inv` (RFC 3261 §9.1: same Request-URI, Via, From, To, Call-ID and
/// CSeq number).
fn cancel(inv: &Req) -> Req {
    Req {
        method: "CANCEL",
        routes: vec![],
        extra: String::new(),
        body: String::new(),
        ..inv.clone()
    }
}

/// The caller's ACK for a non-2xx final response to `inv` (§17.1.1.3: same branch, To of the
/// response).
fn ack_non_2xx(inv: &Req, resp: &Out) -> Req {
    Req {
        method: "ACK",
        to: resp.header(HeaderName::To).unwrap(),
        extra: String::new(),
        body: String::new(),
        ..inv.clone()
    }
}

/// An in-dialog request from the caller after `ok` (the 200 it got): Request-URI from the
/// Contact, route set from Record-Route (reversed, as a UAC does), a new branch.
fn caller_in_dialog(method: &'static str, ok: &Out, branch: &str, cseq: u32) -> Req {
    let mut routes: Vec<String> = ok.headers(HeaderName::RecordRoute);
    routes.reverse();
    Req {
        method,
        uri: uri_of(&ok.header(HeaderName::Contact).unwrap()),
        vias: vec![format!("SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport")],
        max_forwards: Some(70),
        routes,
        from: ok.header(HeaderName::From).unwrap(),
        to: ok.header(HeaderName::To).unwrap(),
        call_id: ok.call_id(),
        cseq,
        extra: String::new(),
        body: String::new(),
        content_length: true,
    }
}

/// The caller's ACK for a 2xx: a transaction of its own, sent along the route set.
fn ack_2xx(ok: &Out, branch: &str) -> Req {
    caller_in_dialog("ACK", ok, branch, ok.cseq().0)
}

/// An in-dialog request from the gateway (the callee) after it answered `fwd` with To tag
/// `gw_tag`: Request-URI is the caller's Contact, route set from Record-Route in order.
fn gateway_in_dialog(method: &'static str, fwd: &Out, gw_tag: &str, branch: &str) -> Req {
    Req {
        method,
        uri: uri_of(&fwd.header(HeaderName::Contact).unwrap()),
        vias: vec![format!("SIP/2.0/UDP {};branch={branch}", fwd.dst)],
        max_forwards: Some(70),
        routes: fwd.headers(HeaderName::RecordRoute),
        from: format!("{};tag={gw_tag}", fwd.header(HeaderName::To).unwrap()),
        to: fwd.header(HeaderName::From).unwrap(),
        call_id: fwd.call_id(),
        cseq: 1,
        extra: String::new(),
        body: String::new(),
        content_length: true,
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        407 => "Proxy Authentication Required",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        _ => "Whatever",
    }
}

/// A response to `req` (a request siplb sent) as its recipient would write it: every Via and
/// Record-Route line copied, From, Call-ID and CSeq copied, To with `to_tag` added.
fn response(req: &Out, code: u16, to_tag: Option<&str>) -> String {
    let mut s = format!("SIP/2.0 {code} {}\r\n", reason(code));
    for l in req.header_lines(HeaderName::Via) {
        s += &l;
    }
    if code > 100 && code < 300 {
        for l in req.header_lines(HeaderName::RecordRoute) {
            s += &l;
        }
    }
    s += &req.header_lines(HeaderName::From)[0];
    let to = req.header(HeaderName::To).unwrap();
    match to_tag {
        Some(tag) if code > 100 && !to.contains(";tag=") => s += &format!("To: {to};tag={tag}\r\n"),
        _ => s += &format!("To: {to}\r\n"),
    }
    s += &req.header_lines(HeaderName::CallId)[0];
    s += &req.header_lines(HeaderName::CSeq)[0];
    if code > 100 && code < 300 && req.is_request(Method::Invite) {
        s += &format!("Contact: <sip:+15551234@{}>\r\n", req.dst);
    }
    s += "Content-Length: 0\r\n\r\n";
    s
}

// ------------------------------------------------------------ INVITE: forwarding, server side

#[test]
fn invite_gets_100_trying_from_siplb() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (trying, _) = h.start_call(&inv);
    assert_eq!(trying.first_line(), "SIP/2.0 100 Trying");
    assert_eq!(trying.to_tag(), None, "100 Trying is hop by hop, no To tag");
    let vias = trying.vias();
    assert_eq!(vias.len(), 1);
    assert!(vias[0].contains("branch=z9hG4bK-a"), "{vias:?}");
    assert_eq!(param_of(&vias[0], "received").as_deref(), Some("127.0.0.1"));
    assert_eq!(param_of(&vias[0], "rport").as_deref(), Some("5070"));
    assert_eq!(trying.cseq(), (1, Method::Invite));
    trying.assert_content_length();
}

#[test]
fn invite_forwarded_with_our_via_on_top_and_received_rport_on_the_callers() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let vias = fwd.vias();
    assert_eq!(vias.len(), 2, "{fwd:?}");
    assert!(
        vias[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"),
        "{vias:?}"
    );
    let ours = fwd.branch();
    assert!(ours.starts_with("z9hG4bK"), "RFC 3261 branch: {ours}");
    assert_ne!(ours, "z9hG4bK-a");
    assert!(vias[1].contains("branch=z9hG4bK-a"));
    assert_eq!(param_of(&vias[1], "received").as_deref(), Some("127.0.0.1"));
    assert_eq!(param_of(&vias[1], "rport").as_deref(), Some("5070"));
    assert_eq!(
        fwd.request_uri(),
        "sip:+15551234@127.0.0.1:5060",
        "Request-URI untouched"
    );
}

#[test]
fn each_invite_gets_its_own_branch() {
    let mut h = Harness::new();
    let (_, a) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let (_, b) = h.start_call(&invite("c2", "z9hG4bK-b"));
    assert_ne!(a.branch(), b.branch());
}

#[test]
fn invite_goes_only_to_configured_gateways_both_used() {
    let mut h = Harness::new();
    let mut seen = Vec::new();
    for i in 0..32 {
        let (_, fwd) = h.start_call(&invite(&format!("spread-{i}"), &format!("z9hG4bK-{i}")));
        seen.push(fwd.dst);
    }
    assert!(seen.contains(&gw1()) && seen.contains(&gw2()), "{seen:?}");
}

#[test]
fn max_forwards_decremented() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.max_forwards = Some(7);
    let (_, fwd) = h.start_call(&inv);
    assert_eq!(fwd.max_forwards(), Some(6));
    assert_eq!(fwd.headers(HeaderName::MaxForwards).len(), 1);
}

#[test]
fn missing_max_forwards_gets_one() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.max_forwards = None;
    let (_, fwd) = h.start_call(&inv);
    assert_eq!(
        fwd.max_forwards(),
        Some(70),
        "RFC 3261 §16.6 step 3: SHOULD be 70"
    );
}

#[test]
fn invite_record_routed_with_dialog_id() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let rr = fwd.headers(HeaderName::RecordRoute);
    assert_eq!(rr.len(), 1, "{fwd:?}");
    let uri = uri_of(&rr[0]);
    assert!(uri.starts_with("sip:127.0.0.1:5060;"), "{uri}");
    assert!(uri.contains(";lr"), "{uri}");
    let did = param_of(&uri, "did").expect("did= in Record-Route");
    assert!(
        !did.is_empty() && u64::from_str_radix(&did, 16).is_ok(),
        "{did}"
    );
}

#[test]
fn forwarded_invite_keeps_body_and_content_length() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    assert_eq!(fwd.body(), SDP.as_bytes());
    fwd.assert_content_length();
    assert_eq!(
        fwd.header(HeaderName::ContentLength).unwrap(),
        SDP.len().to_string()
    );
}

#[test]
fn missing_content_length_added_on_forward() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.content_length = false;
    let (_, fwd) = h.start_call(&inv);
    assert_eq!(fwd.body(), SDP.as_bytes());
    fwd.assert_content_length();
}

#[test]
fn invite_retransmit_absorbed_with_100() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.start_call(&inv);
    h.advance(Duration::from_millis(200));
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(100), "{out:?}");
    assert_eq!(h.stats.fwd_requests.get(), 1, "not forwarded twice");
    assert_eq!(h.shard.transactions(), 1);
}

#[test]
fn invite_retransmit_after_180_gets_the_180_again() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    let ringing = h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert_eq!(
        out.data, ringing.data,
        "the last provisional, resent as it was"
    );
}

#[test]
fn invite_retransmit_after_final_gets_the_final_again() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!((out.dst, &out.data), (caller(), &busy.data));
}

#[test]
fn gateway_100_trying_not_forwarded() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    h.expect_nothing();
    assert_eq!(h.txn(Method::Invite).1, ClientState::Proceeding);
}

#[test]
fn provisional_forwarded_without_our_via() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let out = h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    assert_eq!(out.first_line(), "SIP/2.0 180 Ringing");
    let vias = out.vias();
    assert_eq!(vias.len(), 1, "{out:?}");
    assert!(vias[0].contains("branch=z9hG4bK-a") && vias[0].contains("received=127.0.0.1"));
    assert_eq!(
        out.headers(HeaderName::RecordRoute),
        fwd.headers(HeaderName::RecordRoute)
    );
    assert_eq!(out.to_tag().as_deref(), Some("gw-tag"));
    out.assert_content_length();
}

#[test]
fn response_without_content_length_gets_one_on_forward() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let resp = response(&fwd, 180, Some("gw-tag")).replace("Content-Length: 0\r\n", "");
    let out = h.gateway_answers(&fwd, &resp);
    out.assert_content_length();
}

#[test]
fn ok_forwarded_and_call_confirmed() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    assert_eq!(h.call_state("c1"), Some(DialogState::Unconfirmed));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    assert_eq!(h.call_state("c1"), Some(DialogState::Early));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    assert_eq!(ok.first_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.vias().len(), 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
    h.caller_sends(&caller_in_dialog("ACK", &ok, "z9hG4bK-ack", 1).text());
    assert_eq!(h.call_state("c1"), Some(DialogState::Confirmed));
    let call = h.shard.dialog(b"c1").unwrap();
    assert_eq!(call.callee_tag(), Some(&b"gw-tag"[..]));
    assert_eq!(call.gateway.addr, fwd.dst);
    assert_eq!(
        h.txn(Method::Invite),
        (ServerState::Accepted, ClientState::Accepted)
    );
}

#[test]
fn invite_retransmit_after_2xx_absorbed() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    h.caller_sends(&inv.text());
    h.expect_nothing();
}

#[test]
fn ok_retransmission_forwarded_end_to_end() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let ok = response(&fwd, 200, Some("gw-tag"));
    let first = h.gateway_answers(&fwd, &ok);
    h.advance(T1);
    let again = h.gateway_answers(&fwd, &ok);
    assert_eq!(first.data, again.data);
    assert_eq!(h.stats.fwd_replies.get(), 2);
}

// ---------------------------------------------------------------------- INVITE client timers

#[test]
fn timer_a_retransmits_invite_at_t1_doubling() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    // T1, 3·T1, 7·T1, 15·T1, 31·T1, 63·T1 after sending: intervals T1, 2T1, 4T1 … (no cap).
    for at in [1, 3, 7, 15, 31, 63] {
        h.advance_to(t1s(at) - MS);
        h.expect_nothing();
        h.advance(MS);
        let out = h.take_one();
        assert_eq!(out.dst, fwd.dst);
        assert_eq!(
            out.data, fwd.data,
            "retransmission at {at}·T1 is the same INVITE"
        );
    }
    assert_eq!(h.stats.retransmissions.get(), 6);
}

#[test]
fn timer_a_stops_on_provisional() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.advance(T1);
    h.take_one();
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    h.advance(Duration::from_secs(60));
    h.expect_nothing();
}

#[test]
fn timer_b_sends_408_upstream_at_64_t1() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.advance_to(t1s(64) - MS);
    let retrans = h.take();
    assert!(retrans.iter().all(|o| o.dst == fwd.dst));
    h.advance(MS);
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(408), "{out:?}");
    assert!(
        out.to_tag().is_some(),
        "a final response siplb makes has a To tag"
    );
    assert_eq!(out.cseq(), (1, Method::Invite));
    assert_eq!(out.vias().len(), 1);
    assert_eq!(h.stats.timeouts.get(), 1);
    h.advance(Duration::from_secs(100));
    assert!(
        h.take().iter().all(|o| o.dst == caller()),
        "no more INVITEs to the gateway"
    );
}

#[test]
fn timer_b_transaction_and_call_cleaned_up() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.start_call(&inv);
    h.advance(t1s(64));
    let timeout = h.take().pop().unwrap();
    assert!(timeout.is_response(408));
    h.caller_sends(&ack_non_2xx(&inv, &timeout).text());
    h.expect_nothing();
    h.advance(T4);
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
    h.advance(Duration::from_secs(32));
    assert_eq!(h.shard.dialog_records(), 0);
}

#[test]
fn timer_c_cancels_after_180_s_of_provisional() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.advance(Duration::from_secs(1));
    h.take(); // Timer A
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_secs(180) - MS);
    h.expect_nothing();
    h.advance(MS);
    let c = h.take_one();
    assert_eq!(c.dst, fwd.dst);
    assert!(c.is_request(Method::Cancel), "{c:?}");
    assert_eq!(c.branch(), fwd.branch());
    assert_eq!(c.cseq(), (fwd.cseq().0, Method::Cancel));
    // The gateway gives up as asked: 487 goes upstream, the caller hears the end.
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.expect_nothing();
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(487)),
        "{out:#?}"
    );
    assert!(
        out.iter()
            .any(|o| o.dst == fwd.dst && o.is_request(Method::Ack)),
        "{out:#?}"
    );
}

#[test]
fn timer_c_reset_by_each_provisional() {
    // RFC 3261 §16.7 step 2: a provisional response (101-199) resets Timer C.
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_secs(100));
    h.gateway_answers(&fwd, &response(&fwd, 183, Some("gw-tag")));
    h.advance(Duration::from_secs(180) - MS);
    h.expect_nothing();
    h.advance(MS);
    assert!(h.take_one().is_request(Method::Cancel));
}

#[test]
fn timer_c_without_final_after_cancel_gives_487_upstream() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_secs(180));
    let c = h.take_one();
    assert!(c.is_request(Method::Cancel));
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    // The gateway never sends a final response for the INVITE.
    h.advance(t1s(64));
    let out: Vec<_> = h.take().into_iter().filter(|o| o.dst == caller()).collect();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(out[0].is_response(487), "{out:?}");
}

#[test]
fn final_response_acked_hop_by_hop_and_forwarded() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let ack = out.iter().find(|o| o.dst == fwd.dst).unwrap();
    let busy = out.iter().find(|o| o.dst == caller()).unwrap();
    assert!(busy.is_response(486));
    assert_eq!(busy.vias().len(), 1);
    assert!(ack.is_request(Method::Ack), "{ack:?}");
    assert_eq!(
        ack.branch(),
        fwd.branch(),
        "ACK for non-2xx has the INVITE's branch"
    );
    assert_eq!(ack.vias().len(), 1);
    assert_eq!(ack.cseq(), (fwd.cseq().0, Method::Ack));
    assert_eq!(ack.request_uri(), fwd.request_uri());
    assert_eq!(
        ack.to_tag().as_deref(),
        Some("gw-tag"),
        "To of the response"
    );
    assert_eq!(ack.call_id(), fwd.call_id());
    ack.assert_content_length();
}

#[test]
fn timer_d_absorbs_retransmitted_final_and_resends_ack() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let busy = response(&fwd, 486, Some("gw-tag"));
    h.deliver(fwd.dst, &busy);
    let first_ack = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    let absorbed = h.stats.retrans_absorbed.get();
    h.advance(Duration::from_secs(10));
    h.take(); // Timer G retransmissions toward the caller
    h.deliver(fwd.dst, &busy);
    let out = h.take_one();
    assert_eq!(out.dst, fwd.dst, "the ACK again, nothing to the caller");
    assert_eq!(out.data, first_ack.data);
    assert_eq!(h.stats.retrans_absorbed.get(), absorbed + 1);
    assert_eq!(h.stats.fwd_replies.get(), 1, "486 forwarded once");
}

#[test]
fn timer_d_ends_client_transaction_after_32_s() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&ack_non_2xx(&inv, &busy).text());
    h.advance(Duration::from_secs(32) - MS);
    assert_eq!(h.txn(Method::Invite).1, ClientState::Completed);
    h.advance(MS);
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
    let drops = h.stats.drop_replies.get();
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), drops + 1);
}

// ------------------------------------------------------------------- INVITE server timers

#[test]
fn timer_g_retransmits_final_upstream_doubling_capped_at_t2() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    // Intervals T1, 2T1, 4T1, then T2 (= 8T1) each time.
    let mut at = Duration::ZERO;
    for interval in [T1, T1 * 2, T1 * 4, T2, T2, T2] {
        at += interval;
        h.advance_to(at - MS);
        h.expect_nothing();
        h.advance(MS);
        let out = h.take_one();
        assert_eq!((out.dst, &out.data), (caller(), &busy.data), "at {at:?}");
    }
}

#[test]
fn timer_g_stops_on_ack() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.advance(T1);
    h.take_one();
    h.caller_sends(&ack_non_2xx(&inv, &busy).text());
    h.advance(Duration::from_secs(64));
    h.expect_nothing();
}

#[test]
fn ack_for_non_2xx_absorbed() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    let fwd_requests = h.stats.fwd_requests.get();
    h.caller_sends(&ack_non_2xx(&inv, &busy).text());
    h.expect_nothing();
    assert_eq!(
        h.stats.fwd_requests.get(),
        fwd_requests,
        "hop-by-hop ACK not forwarded"
    );
    assert_eq!(h.txn(Method::Invite).0, ServerState::Confirmed);
}

#[test]
fn timer_h_terminates_without_ack() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    h.take();
    h.advance(t1s(64) - MS);
    let retrans = h.take();
    assert!(
        !retrans.is_empty()
            && retrans
                .iter()
                .all(|o| o.dst == caller() && o.is_response(486))
    );
    assert_eq!(h.txn(Method::Invite).0, ServerState::Completed);
    h.advance(MS);
    h.expect_nothing();
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
    h.advance(Duration::from_secs(60));
    h.expect_nothing();
}

#[test]
fn timer_i_ends_confirmed_server_after_t4() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    let ack = ack_non_2xx(&inv, &busy).text();
    h.caller_sends(&ack);
    h.advance(T4 - MS);
    h.caller_sends(&ack);
    h.expect_nothing();
    assert_eq!(
        h.txn(Method::Invite).0,
        ServerState::Confirmed,
        "ACK retransmission absorbed"
    );
    h.advance(MS);
    assert_eq!(h.txn(Method::Invite).0, ServerState::Terminated);
}

// ----------------------------------------------------------- non-INVITE (BYE) transactions

#[test]
fn bye_from_caller_goes_to_the_call_gateway() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2);
    assert_eq!(bye.routes.len(), 1);
    h.caller_sends(&bye.text());
    let out = h.take_one();
    assert_eq!(out.dst, call.gateway());
    assert!(out.is_request(Method::Bye));
    assert!(
        out.headers(HeaderName::Route).is_empty(),
        "own Route removed: {out:?}"
    );
    assert!(out.headers(HeaderName::RecordRoute).is_empty());
    assert_eq!(out.vias().len(), 2);
    assert!(out.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"));
    assert_eq!(out.max_forwards(), Some(69));
    assert_eq!(
        out.request_uri(),
        bye.uri,
        "Request-URI is the peer's Contact, untouched"
    );
    out.assert_content_length();
    // The answer comes back to the caller and ends the call.
    let ok = h.gateway_answers(&out, &response(&out, 200, None));
    assert_eq!(ok.cseq(), (2, Method::Bye));
    assert_eq!(ok.vias().len(), 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
}

#[test]
fn bye_from_gateway_goes_to_the_caller_address() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = gateway_in_dialog("BYE", &call.fwd, "gw-tag", "z9hG4bK-gwbye");
    h.deliver(call.gateway(), &bye.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_request(Method::Bye));
    assert!(
        out.headers(HeaderName::Route).is_empty(),
        "own Route removed: {out:?}"
    );
    assert_eq!(out.vias().len(), 2);
    assert_eq!(out.request_uri(), "sip:alice@127.0.0.1:5070");
    let ok = response(&out, 200, None);
    h.deliver(caller(), &ok);
    let back = h.take_one();
    assert_eq!(back.dst, call.gateway());
    assert!(back.is_response(200));
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
}

#[test]
fn in_dialog_request_for_unknown_call_gets_481() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let mut bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2);
    bye.call_id = "no-such-call".into();
    bye.routes.clear();
    h.caller_sends(&bye.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(481), "{out:?}");
}

#[test]
fn bye_retransmit_absorbed() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text();
    h.caller_sends(&bye);
    h.take_one();
    h.advance(Duration::from_millis(100));
    h.caller_sends(&bye);
    h.expect_nothing();
}

#[test]
fn bye_retransmit_after_final_gets_the_final_again() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text();
    h.caller_sends(&bye);
    let fwd = h.take_one();
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, None));
    h.caller_sends(&bye);
    let again = h.take_one();
    assert_eq!((again.dst, &again.data), (caller(), &ok.data));
}

#[test]
fn non_invite_retransmit_after_provisional_gets_the_provisional() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let info = caller_in_dialog("INFO", &call.ok, "z9hG4bK-info", 2).text();
    h.caller_sends(&info);
    let fwd = h.take_one();
    let prov = h.gateway_answers(&fwd, &response(&fwd, 183, None));
    h.caller_sends(&info);
    let again = h.take_one();
    assert_eq!((again.dst, &again.data), (caller(), &prov.data));
}

#[test]
fn timer_e_retransmits_bye_doubling_capped_at_t2() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let start = h.elapsed();
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    let fwd = h.take_one();
    let mut at = start;
    for interval in [T1, T1 * 2, T1 * 4, T2, T2, T2] {
        at += interval;
        h.advance_to(at - MS);
        h.expect_nothing();
        h.advance(MS);
        let out = h.take_one();
        assert_eq!((out.dst, &out.data), (fwd.dst, &fwd.data));
    }
}

#[test]
fn timer_e_uses_t2_once_proceeding() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    let fwd = h.take_one();
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    h.expect_nothing();
    // The first retransmission is still due at T1 (Timer E was set then); after it, T2.
    h.advance(T1);
    h.take_one();
    h.advance(T2 - MS);
    h.expect_nothing();
    h.advance(MS);
    assert!(h.take_one().is_request(Method::Bye));
}

#[test]
fn timer_f_times_out_bye_without_408() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let start = h.elapsed();
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    h.take_one();
    // The dialog ends with the BYE; its record stays for the BYE's transaction.
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
    h.advance_to(start + t1s(64) - MS);
    assert!(
        h.take()
            .iter()
            .all(|o| o.dst == call.gateway() && o.is_request(Method::Bye))
    );
    assert_eq!(h.txn(Method::Bye).1, ClientState::Calling);
    h.advance(MS);
    h.expect_nothing(); // RFC 4320: no 408 for a non-INVITE
    assert!(
        !h.txn_states().iter().any(|(m, ..)| *m == Method::Bye),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn timer_j_keeps_the_bye_answer_for_64_t1() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text();
    h.caller_sends(&bye);
    let fwd = h.take_one();
    let start = h.elapsed();
    h.gateway_answers(&fwd, &response(&fwd, 200, None));
    h.advance_to(start + t1s(64) - MS);
    h.caller_sends(&bye);
    assert!(h.take_one().is_response(200));
    assert_eq!(h.txn(Method::Bye).0, ServerState::Completed);
    h.advance(MS);
    assert!(
        !h.txn_states().iter().any(|(m, ..)| *m == Method::Bye),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn timer_k_absorbs_response_retransmissions_for_t4() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    let fwd = h.take_one();
    let ok = response(&fwd, 200, None);
    h.gateway_answers(&fwd, &ok);
    h.advance(T4 - MS);
    h.deliver(fwd.dst, &ok);
    h.expect_nothing();
    assert_eq!(h.txn(Method::Bye).1, ClientState::Completed);
    h.advance(MS);
    assert_eq!(h.txn(Method::Bye).1, ClientState::Terminated);
    assert_eq!(
        h.stats.fwd_replies.get(),
        3,
        "180 and 200 of the INVITE, 200 of the BYE once"
    );
}

// ----------------------------------------------------------------------------------- ACK

#[test]
fn ack_for_2xx_forwarded_to_the_gateway_by_dialog_id() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    let ack = ack_2xx(&ok, "z9hG4bK-ack");
    assert_eq!(ack.routes.len(), 1, "route set from Record-Route");
    h.caller_sends(&ack.text());
    let out = h.take_one();
    assert_eq!(out.dst, fwd.dst);
    assert!(out.is_request(Method::Ack));
    assert!(
        out.headers(HeaderName::Route).is_empty(),
        "own Route removed: {out:?}"
    );
    assert_eq!(out.vias().len(), 2);
    assert!(out.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"));
    assert_ne!(
        out.branch(),
        fwd.branch(),
        "ACK for 2xx is a transaction of its own"
    );
    assert_eq!(out.max_forwards(), Some(69));
    assert_eq!(out.cseq(), (1, Method::Ack));
    assert_eq!(
        out.request_uri(),
        uri_of(&ok.header(HeaderName::Contact).unwrap())
    );
    out.assert_content_length();
}

#[test]
fn ack_for_2xx_retransmission_forwarded_with_the_same_branch() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let ack = ack_2xx(&call.ok, "z9hG4bK-ack-c1").text();
    h.caller_sends(&ack);
    let again = h.take_one();
    h.caller_sends(&ack);
    let third = h.take_one();
    assert_eq!(again.data, third.data);
}

#[test]
fn ack_without_call_absorbed() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let mut ack = ack_2xx(&call.ok, "z9hG4bK-ack");
    ack.call_id = "other".into();
    ack.routes.clear();
    h.caller_sends(&ack.text());
    h.expect_nothing();
}

#[test]
fn ack_never_answered() {
    // RFC 3261 §17: an ACK gets no response, whatever is wrong with it.
    let mut h = Harness::new();
    let mut ack = invite("c1", "z9hG4bK-a");
    ack.method = "ACK";
    ack.body.clear();
    h.deliver(stranger(), &ack.text());
    h.expect_nothing();
    ack.max_forwards = Some(0);
    h.caller_sends(&ack.text());
    h.expect_nothing();
    ack.max_forwards = Some(70);
    ack.routes = vec!["<sip:198.51.100.1;lr>".into()];
    h.caller_sends(&ack.text());
    h.expect_nothing();
    h.caller_sends("ACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nCSeq: 1 ACK\r\n\r\n");
    h.expect_nothing();
}

// -------------------------------------------------------------------------------- CANCEL

#[test]
fn cancel_before_provisional_held_until_provisional() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.caller_sends(&cancel(&inv).text());
    let ok = h.take_one();
    assert_eq!(ok.dst, caller());
    assert!(ok.is_response(200), "{ok:?}");
    assert_eq!(ok.cseq(), (1, Method::Cancel));
    // RFC 3261 §9.1: no CANCEL before a provisional response; the INVITE is still retransmitted.
    h.advance(T1);
    let out = h.take_one();
    assert!(out.is_request(Method::Invite));
    h.deliver(fwd.dst, &response(&fwd, 100, None));
    let c = h.take_one();
    assert_eq!(c.dst, fwd.dst);
    assert!(c.is_request(Method::Cancel), "{c:?}");
    assert_eq!(c.branch(), fwd.branch());
}

#[test]
fn cancel_after_provisional_answered_and_sent_downstream() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let ok = out.iter().find(|o| o.dst == caller()).unwrap();
    let c = out.iter().find(|o| o.dst == fwd.dst).unwrap();
    assert!(ok.is_response(200));
    assert_eq!(ok.cseq(), (1, Method::Cancel));
    assert_eq!(ok.vias().len(), 1);
    assert_eq!(
        c.first_line(),
        format!("CANCEL {} SIP/2.0", fwd.request_uri())
    );
    assert_eq!(c.branch(), fwd.branch(), "same branch as the INVITE");
    assert_eq!(c.vias().len(), 1, "only our Via");
    assert_eq!(c.cseq(), (fwd.cseq().0, Method::Cancel));
    assert_eq!(c.call_id(), fwd.call_id());
    assert_eq!(c.header(HeaderName::From), fwd.header(HeaderName::From));
    assert_eq!(c.header(HeaderName::To), fwd.header(HeaderName::To));
    assert!(c.max_forwards().is_some());
    c.assert_content_length();
}

#[test]
fn cancelled_invite_487_forwarded_and_acked_hop_by_hop() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.expect_nothing(); // the 200 for our CANCEL stays here
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let out = h.take();
    let ack = out
        .iter()
        .find(|o| o.dst == fwd.dst)
        .expect("ACK to the gateway");
    let terminated = out
        .iter()
        .find(|o| o.dst == caller())
        .expect("487 to the caller");
    assert!(terminated.is_response(487));
    assert_eq!(terminated.cseq(), (1, Method::Invite));
    assert!(ack.is_request(Method::Ack));
    assert_eq!(ack.branch(), fwd.branch());
    assert_eq!(ack.cseq(), (fwd.cseq().0, Method::Ack));
    // The caller's ACK for the 487 ends here.
    h.caller_sends(&ack_non_2xx(&inv, terminated).text());
    h.expect_nothing();
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
}

#[test]
fn ok_crossing_cancel_forwarded_and_call_confirmed() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    // The gateway answered before it saw the CANCEL.
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    assert!(ok.is_response(200));
    assert_eq!(ok.cseq(), (1, Method::Invite));
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.expect_nothing();
    h.caller_sends(&caller_in_dialog("ACK", &ok, "z9hG4bK-ack", 1).text());
    assert_eq!(h.take_one().dst, fwd.dst);
    // No 487 from siplb later either.
    h.advance(Duration::from_secs(64));
    h.expect_nothing();
}

#[test]
fn cancel_for_unknown_transaction_gets_481() {
    let mut h = Harness::new();
    h.caller_sends(&cancel(&invite("c1", "z9hG4bK-nothing")).text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(481), "{out:?}");
    assert_eq!(h.shard.transactions(), 0);
}

#[test]
fn cancel_retransmit_gets_200_again() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    let c = cancel(&inv).text();
    h.caller_sends(&c);
    let ok = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&c);
    let again = h.take_one();
    assert_eq!(
        (again.dst, &again.data),
        (caller(), &ok.data),
        "not sent downstream twice"
    );
}

#[test]
fn cancel_after_final_not_sent_downstream() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    h.take();
    h.caller_sends(&cancel(&inv).text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(200));
}

#[test]
fn local_cancel_retransmitted_until_answered() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    h.advance(T1);
    let again = h.take_one();
    assert_eq!((again.dst, &again.data), (fwd.dst, &c.data));
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.advance(Duration::from_secs(10));
    h.expect_nothing();
}

// ---------------------------------------------------------------- refusals and bad input

#[test]
fn max_forwards_zero_gets_483() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.max_forwards = Some(0);
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(483), "{out:?}");
    assert_eq!(h.shard.transactions(), 0);
}

#[test]
fn unknown_source_gets_403_and_nothing_reaches_a_gateway() {
    let mut h = Harness::new();
    h.deliver(stranger(), &invite("c1", "z9hG4bK-a").text());
    let out = h.take_one();
    assert_eq!(out.dst, stranger());
    assert!(out.is_response(403), "{out:?}");
    assert!(out.to_tag().is_some());
    let via = &out.vias()[0];
    assert_eq!(param_of(via, "received").as_deref(), Some("192.0.2.9"));
    assert_eq!(h.stats.forbidden.get(), 1);
    assert_eq!(h.stats.fwd_requests.get(), 0);
    assert_eq!((h.shard.transactions(), h.shard.dialog_records()), (0, 0));
}

/// `core:forbidden` counts the 403s sent: the ACK of a 403 is dropped, and counted as a
/// dropped request only.
#[test]
fn the_ack_of_a_403_is_not_counted_as_forbidden() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.deliver(stranger(), &inv.text());
    let out = h.take_one();
    assert!(out.is_response(403), "{out:?}");
    h.deliver(stranger(), &ack_non_2xx(&inv, &out).text());
    h.expect_nothing();
    assert_eq!(h.stats.forbidden.get(), 1);
    assert_eq!(h.stats.local_replies.get(), 1);
    assert_eq!(h.stats.drop_requests.get(), 1);
}

#[test]
fn invite_from_gateway_gets_403() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.vias = vec!["SIP/2.0/UDP 127.0.0.1:5081;branch=z9hG4bK-g".into()];
    h.deliver(gw1(), &inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, gw1());
    assert!(
        out.is_response(403),
        "no relaying between gateways: {out:?}"
    );
}

#[test]
fn preloaded_route_gets_403() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.routes = vec!["<sip:198.51.100.1;lr>".into()];
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(403), "{out:?}");
    assert_eq!(h.shard.transactions(), 0);
}

#[test]
fn proxy_require_gets_420_with_unsupported() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.extra += "Proxy-Require: foo\r\n";
    h.caller_sends(&inv.text());
    let out = h.take_one();
    assert!(out.is_response(420), "{out:?}");
    assert_eq!(out.named("Unsupported").as_deref(), Some("foo"), "{out:?}");
    assert_eq!(h.shard.transactions(), 0);
}

#[test]
fn response_with_foreign_via_dropped_and_counted() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let resp =
        response(&fwd, 180, Some("gw-tag")).replacen("127.0.0.1:5060", "198.51.100.7:5060", 1);
    h.deliver(fwd.dst, &resp);
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), 1);
}

#[test]
fn response_with_unknown_branch_dropped_and_counted() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let resp = response(&fwd, 200, Some("gw-tag")).replace(&fwd.branch(), "z9hG4bK-unknown");
    h.deliver(fwd.dst, &resp);
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::Unconfirmed));
}

#[test]
fn full_transaction_table_gets_503_with_retry_after() {
    let mut h = Harness::with_config(|c| {
        c.max_transactions = 2;
        c.retry_after = 7;
    });
    h.start_call(&invite("c1", "z9hG4bK-1"));
    h.start_call(&invite("c2", "z9hG4bK-2"));
    h.caller_sends(&invite("c3", "z9hG4bK-3").text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert!(out.is_response(503), "{out:?}");
    assert_eq!(out.named("Retry-After").as_deref(), Some("7"), "{out:?}");
    assert_eq!(h.stats.overload_503.get(), 1);
    assert_eq!(h.shard.transactions(), 2);
    assert!(h.call_state("c3").is_none());
}

#[test]
fn unparsable_request_with_via_gets_400_with_reason() {
    let mut h = Harness::new();
    let bad = invite("c1", "z9hG4bK-a")
        .text()
        .replace("Max-Forwards: 70", "Max-Forwards: many");
    h.deliver(caller(), &bad);
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert_eq!(out.status(), Some(400));
    assert_eq!(
        out.first_line(),
        "SIP/2.0 400 Bad Request - Bad Max-Forwards"
    );
    assert_eq!(out.cseq(), (1, Method::Invite));
    assert_eq!(out.vias().len(), 1);
    assert_eq!(h.stats.bad_msg.get(), 1);
    assert_eq!(h.stats.fwd_requests.get(), 0);
}

#[test]
fn unparsable_request_without_via_dropped() {
    let mut h = Harness::new();
    let bad = "INVITE sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
    h.caller_sends(bad);
    h.expect_nothing();
    assert_eq!(h.stats.drop_requests.get(), 1);
}

#[test]
fn malformed_response_dropped_and_counted() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let bad = response(&fwd, 180, Some("gw-tag")).replace("CSeq: 1 INVITE", "CSeq: x");
    h.deliver(fwd.dst, &bad);
    h.expect_nothing();
    assert_eq!(h.stats.drop_replies.get(), 1);
    assert_eq!(h.stats.drop_requests.get(), 0);
    assert_eq!(h.txn(Method::Invite).1, ClientState::Calling);
}

#[test]
fn keep_alive_ignored() {
    let mut h = Harness::new();
    h.deliver_bytes(caller(), b"\r\n\r\n");
    h.expect_nothing();
    assert_eq!(h.stats.bad_msg.get(), 0);
}

#[test]
fn options_out_of_dialog_answered_200() {
    let mut h = Harness::new();
    let mut opt = invite("o1", "z9hG4bK-o");
    opt.method = "OPTIONS";
    opt.body.clear();
    h.caller_sends(&opt.text());
    let out = h.take_one();
    assert!(out.is_response(200), "{out:?}");
    assert_eq!(out.cseq(), (1, Method::Options));
}

// ------------------------------------------------------------------------------- cleanup

#[test]
fn everything_cleaned_up_after_answered_call_and_bye() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    h.caller_sends(&caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text());
    let bye = h.take_one();
    h.gateway_answers(&bye, &response(&bye, 200, None));
    assert_eq!(h.shard.dialog_records(), 1, "the ended call lingers");
    h.advance(t1s(64) + Duration::from_secs(40));
    assert_eq!(h.shard.transactions(), 0, "{:?}", h.txn_states());
    assert_eq!(h.shard.dialog_records(), 0);
    h.drive();
    assert_eq!(h.shard.poll_timeout(), None);
}

#[test]
fn everything_cleaned_up_after_rejected_call() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw-tag")));
    let busy = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&ack_non_2xx(&inv, &busy).text());
    h.advance(Duration::from_secs(40));
    assert_eq!(
        (h.shard.transactions(), h.shard.dialog_records()),
        (0, 0),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn everything_cleaned_up_after_cancelled_call() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let terminated = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&ack_non_2xx(&inv, &terminated).text());
    h.advance(t1s(64) + MS);
    assert_eq!(
        (h.shard.transactions(), h.shard.dialog_records()),
        (0, 0),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn everything_cleaned_up_when_nobody_answers() {
    let mut h = Harness::new();
    h.start_call(&invite("c1", "z9hG4bK-a"));
    h.drive();
    assert_eq!(
        (h.shard.transactions(), h.shard.dialog_records()),
        (0, 0),
        "{:?}",
        h.txn_states()
    );
}

#[test]
fn invite_after_challenge_keeps_the_call_record() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.deliver(fwd.dst, &response(&fwd, 407, Some("gw-tag")));
    let challenge = h.take().into_iter().find(|o| o.dst == caller()).unwrap();
    h.caller_sends(&ack_non_2xx(&inv, &challenge).text());
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
    // The caller answers the challenge: same Call-ID and From tag, next CSeq.
    h.advance(Duration::from_secs(1));
    let mut again = invite("c1", "z9hG4bK-b");
    again.cseq = 2;
    let (_, fwd2) = h.start_call(&again);
    assert_eq!(fwd2.dst, fwd.dst, "same gateway");
    assert_eq!(h.call_state("c1"), Some(DialogState::Unconfirmed));
    h.gateway_answers(&fwd2, &response(&fwd2, 180, Some("gw-tag2")));
    // Ringing for longer than an ended call lingers.
    h.advance(Duration::from_secs(60));
    assert_eq!(h.call_state("c1"), Some(DialogState::Early));
    let ok = h.gateway_answers(&fwd2, &response(&fwd2, 200, Some("gw-tag2")));
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
    assert_eq!(h.stats.processed_dialogs.get(), 2);
    assert_eq!(h.stats.failed_dialogs.get(), 1);
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 3).text());
    assert_eq!(h.take_one().dst, fwd.dst);
}

#[test]
fn repeated_provisionals_do_not_grow_the_timer_queue() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    for _ in 0..100 {
        h.gateway_answers(&fwd, &response(&fwd, 183, Some("gw-tag")));
        h.advance(Duration::from_millis(10));
    }
    // One entry for the transaction, one for the call record.
    assert!(
        h.shard.schedule.len() <= 3,
        "{} timer entries",
        h.shard.schedule.len()
    );
}

#[test]
fn our_via_directly_above_the_senders_via() {
    let mut h = Harness::new();
    let mut inv = invite("c1", "z9hG4bK-a");
    inv.max_forwards = None;
    let (_, fwd) = h.start_call(&inv);
    let m = fwd.msg();
    let names: Vec<HeaderName> = m.headers().iter().map(|h| h.name).collect();
    let first_via = names.iter().position(|n| *n == HeaderName::Via).unwrap();
    assert_eq!(
        names[first_via + 1],
        HeaderName::Via,
        "Via lines kept together: {fwd:?}"
    );
    assert!(fwd.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;"));
}

#[test]
fn unparsable_request_after_empty_lines_gets_400() {
    let mut h = Harness::new();
    let bad = invite("c1", "z9hG4bK-a")
        .text()
        .replace("Max-Forwards: 70", "Max-Forwards: many");
    h.caller_sends(&format!("\r\n\r\n{bad}"));
    let out = h.take_one();
    assert_eq!(out.status(), Some(400), "{out:?}");
}

#[test]
fn reinvite_from_gateway_forwarded_to_caller_and_keeps_the_callee_tag() {
    let mut h = Harness::new();
    let call = h.established_call("c1");
    let mut reinv = gateway_in_dialog("INVITE", &call.fwd, "gw-tag", "z9hG4bK-reinv");
    reinv.extra = format!("Contact: <sip:+15551234@{}>\r\n", call.gateway());
    reinv.body = SDP.into();
    h.deliver(call.gateway(), &reinv.text());
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    let trying = out.iter().find(|o| o.dst == call.gateway()).unwrap();
    let fwd = out.iter().find(|o| o.dst == caller()).unwrap();
    assert!(trying.is_response(100));
    assert!(fwd.is_request(Method::Invite));
    assert!(fwd.headers(HeaderName::Route).is_empty());
    // The caller answers; its To tag is the caller's own.
    h.deliver(caller(), &response(fwd, 200, None));
    let ok = h.take_one();
    assert_eq!(ok.dst, call.gateway());
    assert!(ok.is_response(200));
    let c = h.shard.dialog(b"c1").unwrap();
    assert_eq!(c.callee_tag(), Some(&b"gw-tag"[..]));
    assert_eq!(c.caller_tag(), b"alice-tag");
}

#[test]
fn cancel_200_echoes_the_callers_via() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    h.start_call(&inv);
    h.caller_sends(&cancel(&inv).text());
    let ok = h.take_one();
    let via = &ok.vias()[0];
    assert_eq!(param_of(via, "branch"), Some(inv.branch()));
    assert_eq!(param_of(via, "rport").as_deref(), Some("5070"));
}

#[test]
fn response_with_vias_on_one_line_loses_only_ours() {
    let mut h = Harness::new();
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let vias = fwd.vias().join(", ");
    let mut resp = format!("SIP/2.0 180 Ringing\r\nVia: {vias}\r\n");
    for name in [HeaderName::From, HeaderName::CallId, HeaderName::CSeq] {
        resp += &fwd.header_lines(name)[0];
    }
    resp += &format!(
        "To: {};tag=gw-tag\r\nContent-Length: 0\r\n\r\n",
        fwd.header(HeaderName::To).unwrap()
    );
    let out = h.gateway_answers(&fwd, &resp);
    assert_eq!(out.vias(), fwd.vias()[1..].to_vec(), "{out:?}");
    out.assert_content_length();
}

#[test]
fn pending_cancel_released_by_180_which_is_forwarded_too() {
    let mut h = Harness::new();
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    h.caller_sends(&cancel(&inv).text());
    assert!(h.take_one().is_response(200));
    h.deliver(fwd.dst, &response(&fwd, 180, Some("gw-tag")));
    let out = h.take();
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out.iter().any(|o| o.dst == caller() && o.is_response(180)));
    assert!(
        out.iter()
            .any(|o| o.dst == fwd.dst && o.is_request(Method::Cancel))
    );
}

#[test]
fn call_that_never_ends_is_swept_after_call_max_age() {
    let mut h = Harness::with_config(|c| c.dialog.default_timeout = Duration::from_secs(300));
    let _call = h.established_call("c1");
    h.advance(Duration::from_secs(200));
    assert_eq!(h.shard.dialog_records(), 1, "still within call_max_age");
    h.advance(Duration::from_secs(200));
    assert_eq!(
        h.shard.dialog_records(),
        0,
        "removed by the sweep after call_max_age"
    );
    h.drive();
    assert_eq!(
        h.shard.poll_timeout(),
        None,
        "no sweep left once no call is"
    );
}

// ------------------------------------------------------------------ dialogs, profiles, limits

/// A harness whose customer's account is the From user (`alice`), limited to `max` calls,
/// with profile `total` and the given dialog timeouts.
fn limited(max: u32, timers: DialogTimers) -> Harness {
    use crate::dialog::{ACCOUNT, ProfileLimits, Profiles, Rule};
    Harness::with_config(|c| {
        let p = Profiles::new(
            &[("total".into(), ProfileLimits::default())],
            &[(
                ACCOUNT.into(),
                ProfileLimits {
                    max: Some(max),
                    ..Default::default()
                },
            )],
            100,
        );
        c.rules = Arc::new(vec![Rule::new(p.id("total").unwrap())]);
        c.profiles = Arc::new(p);
        c.dialog = timers;
    })
}

impl Harness {
    /// Dialogs of account `alice` now.
    fn alice(&self) -> u64 {
        self.shard
            .cfg
            .profiles
            .get(crate::dialog::ACCOUNT)
            .unwrap()
            .size(Some(b"alice"))
    }

    fn total(&self) -> u64 {
        self.shard.cfg.profiles.get("total").unwrap().size(None)
    }

    /// Advances 10 ms at a time until something is sent (at most `limit`): what was sent first.
    #[track_caller]
    fn advance_until_sent(&mut self, limit: Duration) -> Vec<Out> {
        let end = self.elapsed() + limit;
        while self.elapsed() < end {
            self.advance(Duration::from_millis(10));
            let out = self.take();
            if !out.is_empty() {
                return out;
            }
        }
        panic!("nothing sent within {limit:?}");
    }
}

#[test]
fn over_the_account_limit_an_invite_gets_the_limit_reply_and_nothing_is_forwarded() {
    let mut h = limited(2, DialogTimers::default());
    let a = h.established_call("c1");
    h.established_call("c2");
    assert_eq!((h.alice(), h.total()), (2, 2));
    h.caller_sends(&invite("c3", "z9hG4bK-c3").text());
    let out = h.take_one();
    assert_eq!(out.dst, caller());
    assert_eq!(out.first_line(), "SIP/2.0 503 Account call limit");
    assert_eq!(
        out.named("Reason").as_deref(),
        Some("Q.850;cause=34;text=\"Account call limit\"")
    );
    assert_eq!(
        out.named("Retry-After"),
        None,
        "no Retry-After on a limit reply"
    );
    assert_eq!(h.stats.limits_rejected.get(), 1);
    assert_eq!(h.stats.limits_account_table_full.get(), 0);
    assert_eq!(h.stats.overload_503.get(), 0);
    assert_eq!(
        (h.alice(), h.total()),
        (2, 2),
        "the refused call holds nothing"
    );
    assert!(h.shard.dialog(b"c3").is_none());
    // One call ends: the next one gets through.
    h.caller_sends(&caller_in_dialog("BYE", &a.ok, "z9hG4bK-bye1", 2).text());
    assert_eq!(h.take_one().dst, a.gateway());
    assert_eq!(h.alice(), 1);
    h.established_call("c4");
    assert_eq!(h.alice(), 2);
}

#[test]
fn the_limit_reply_is_configurable() {
    let mut h = Harness::with_config(|c| {
        let p = crate::dialog::Profiles::new(
            &[],
            &[(
                crate::dialog::ACCOUNT.into(),
                crate::dialog::ProfileLimits {
                    max: Some(0),
                    ..Default::default()
                },
            )],
            10,
        );
        c.rules = Arc::default();
        c.profiles = Arc::new(p);
        c.limit_reply = LimitReply {
            code: 486,
            reason: "Too Many Calls".into(),
            q850_cause: None,
        };
    });
    h.caller_sends(&invite("c1", "z9hG4bK-a").text());
    let out = h.take_one();
    assert_eq!(out.first_line(), "SIP/2.0 486 Too Many Calls");
    assert_eq!(out.named("Reason"), None);
}

/// Every way a dialog ends gives its places back, once: BYE (and its retransmission and
/// answer), a failure answer, CANCEL, no answer at all (Timer B).
#[test]
fn every_end_frees_the_place_exactly_once() {
    let mut h = limited(1, DialogTimers::default());
    // BYE, retransmitted, answered.
    let call = h.established_call("c1");
    assert_eq!(h.alice(), 1);
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2).text();
    h.caller_sends(&bye);
    let fwd_bye = h.take_one();
    h.caller_sends(&bye);
    h.deliver(call.gateway(), &response(&fwd_bye, 200, None));
    h.take();
    assert_eq!(h.alice(), 0);
    // 486 from the gateway.
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-c2"));
    assert_eq!(h.alice(), 1);
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw")));
    h.take();
    assert_eq!(h.alice(), 0);
    // CANCEL while ringing.
    let inv = invite("c3", "z9hG4bK-c3");
    let (_, fwd) = h.start_call(&inv);
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw")));
    h.caller_sends(&cancel(&inv).text());
    let c = h.take().into_iter().find(|o| o.dst == fwd.dst).unwrap();
    h.deliver(fwd.dst, &response(&c, 200, Some("gw")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw")));
    h.take();
    assert_eq!(h.alice(), 0);
    // Silence: Timer B, 408.
    h.start_call(&invite("c4", "z9hG4bK-c4"));
    h.advance(t1s(64) + MS);
    assert!(h.take().iter().any(|o| o.is_response(408)));
    assert_eq!(h.alice(), 0);
    assert_eq!(h.total(), 0);
    assert_eq!(h.stats.processed_dialogs.get(), 4);
    assert_eq!(h.stats.failed_dialogs.get(), 3);
    assert_eq!(h.shard.active_dialogs(), 0);
    assert_eq!(h.shard.early_dialogs(), 0);
}

#[test]
fn states_and_gauges_follow_kamailio() {
    let mut h = limited(10, DialogTimers::default());
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let state = |h: &Harness| h.shard.dialog(b"c1").unwrap().state.number();
    assert_eq!(state(&h), 1);
    assert_eq!((h.shard.active_dialogs(), h.shard.early_dialogs()), (1, 1));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    assert_eq!(state(&h), 2);
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    assert_eq!(state(&h), 3);
    assert_eq!((h.shard.active_dialogs(), h.shard.early_dialogs()), (1, 0));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    assert_eq!(state(&h), 4);
    let c = h.shard.dialog(b"c1").unwrap();
    assert_eq!(&*c.caller_leg.contact, b"sip:alice@127.0.0.1:5070");
    assert_eq!(
        &*c.callee_leg.contact,
        format!("sip:+15551234@{}", fwd.dst).as_bytes()
    );
    assert_eq!(&*c.callee_leg.tag, b"gw-tag");
    assert!(c.to.ends_with(b";tag=gw-tag"));
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2).text());
    assert_eq!(state(&h), 5);
    assert_eq!((h.shard.active_dialogs(), h.shard.early_dialogs()), (0, 0));
}

/// `default_timeout`: BYE to both sides, each as the other side would send it, answered and
/// absorbed; the dialog counts as expired and frees its places.
#[test]
fn default_timeout_sends_bye_to_both_sides() {
    let timers = DialogTimers {
        default_timeout: Duration::from_secs(10),
        ..DialogTimers::default()
    };
    let mut h = limited(5, timers);
    let call = h.established_call("c1");
    let gw = call.gateway();
    let answered = h.elapsed();
    let out = h.advance_until_sent(Duration::from_secs(12));
    // Swept every tenth of the timeout: within 10 % of it.
    let after = h.elapsed() - answered;
    assert!(
        after >= Duration::from_secs(10) && after <= Duration::from_secs(11),
        "{after:?}"
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let to_gw = out
        .iter()
        .find(|o| o.dst == gw)
        .expect("BYE to the gateway");
    let to_caller = out
        .iter()
        .find(|o| o.dst == caller())
        .expect("BYE to the caller");
    for o in [to_gw, to_caller] {
        assert!(o.is_request(Method::Bye), "{o:?}");
        assert_eq!(o.call_id(), "c1");
        assert_eq!(o.vias().len(), 1);
        assert!(o.vias()[0].starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"));
    }
    assert_eq!(to_gw.request_uri(), format!("sip:+15551234@{gw}"));
    assert_eq!(
        param_of(&to_gw.header(HeaderName::From).unwrap(), "tag").as_deref(),
        Some("alice-tag")
    );
    assert_eq!(to_gw.to_tag().as_deref(), Some("gw-tag"));
    assert_eq!(to_gw.cseq(), (2, Method::Bye));
    assert_eq!(to_caller.request_uri(), "sip:alice@127.0.0.1:5070");
    assert_eq!(
        param_of(&to_caller.header(HeaderName::From).unwrap(), "tag").as_deref(),
        Some("gw-tag")
    );
    assert_eq!(to_caller.to_tag().as_deref(), Some("alice-tag"));
    assert_eq!(to_caller.cseq(), (1, Method::Bye));
    assert_eq!(h.stats.expired_dialogs.get(), 1);
    assert_eq!(h.call_state("c1"), Some(DialogState::Ended));
    assert_eq!((h.alice(), h.total()), (0, 0));
    // Their 200s are absorbed.
    h.deliver(gw, &response(to_gw, 200, None));
    h.deliver(caller(), &response(to_caller, 200, None));
    h.expect_nothing();
    // Unanswered they would be retransmitted (Timer E), not forgotten.
    let call2 = h.established_call("c2");
    assert_eq!(h.advance_until_sent(Duration::from_secs(12)).len(), 2);
    h.advance(t1s(1));
    let again = h.take();
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().all(|o| o.is_request(Method::Bye)));
    let _ = call2;
}

#[test]
fn noack_timeout_ends_an_answered_dialog_nobody_acknowledged() {
    let timers = DialogTimers {
        noack_timeout: Duration::from_secs(5),
        ..DialogTimers::default()
    };
    let mut h = limited(5, timers);
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    let byes: Vec<Out> = h
        .advance_until_sent(Duration::from_secs(6))
        .into_iter()
        .filter(|o| o.is_request(Method::Bye))
        .collect();
    assert_eq!(byes.len(), 2, "{byes:?}");
    assert_eq!(h.stats.expired_dialogs.get(), 1);
    assert_eq!(h.alice(), 0);
}

#[test]
fn early_timeout_cancels_a_call_that_rings_too_long() {
    let timers = DialogTimers {
        early_timeout: Duration::from_secs(5),
        ..DialogTimers::default()
    };
    let mut h = limited(5, timers);
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    let mut out = h.advance_until_sent(Duration::from_secs(6));
    assert_eq!(out.len(), 1, "{out:?}");
    let c = out.remove(0);
    assert!(c.is_request(Method::Cancel), "{c:?}");
    assert_eq!(c.dst, fwd.dst);
    h.deliver(fwd.dst, &response(&c, 200, Some("gw-tag")));
    h.deliver(fwd.dst, &response(&fwd, 487, Some("gw-tag")));
    let out = h.take();
    assert!(
        out.iter().any(|o| o.dst == caller() && o.is_response(487)),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|o| o.dst == fwd.dst && o.is_request(Method::Ack))
    );
    assert_eq!(h.stats.failed_dialogs.get(), 1);
    assert_eq!(h.alice(), 0);
}

/// Variables set at INVITE, answer and end; the `Call_End` event of an answered dialog with
/// BillSec the answered time to the second.
#[test]
fn dialog_variables_and_the_call_end_event() {
    use crate::dialog::{DialogVar, ValueFrom, VarAt};
    let mut h = Harness::with_config(|c| {
        c.emit.dialogs = true;
        c.vars = vec![
            DialogVar {
                name: "Caller".into(),
                value: ValueFrom::FromUser,
                at: VarAt::Invite,
            },
            DialogVar {
                name: "Answered".into(),
                value: ValueFrom::Literal("yes".into()),
                at: VarAt::Start,
            },
            DialogVar {
                name: "Ended".into(),
                value: ValueFrom::Literal("yes".into()),
                at: VarAt::End,
            },
        ];
    });
    h.shard.set_epoch(h.now, 1_700_000_000_000);
    let (_, fwd) = h.start_call(&invite("c1", "z9hG4bK-a"));
    let vars = |h: &Harness| -> Vec<(String, String)> {
        h.shard
            .dialog(b"c1")
            .unwrap()
            .vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        vars(&h),
        [
            ("SetupTime".into(), "1700000000".into()),
            ("Caller".into(), "alice".into())
        ]
    );
    h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.advance(Duration::from_millis(2_300));
    let ok = h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    h.caller_sends(&ack_2xx(&ok, "z9hG4bK-ack").text());
    h.take();
    assert!(vars(&h).contains(&("AnswerTime".into(), "1700000002".into())));
    assert!(vars(&h).contains(&("Answered".into(), "yes".into())));
    assert!(h.call_ends().is_empty());
    // Held 61.6 s: billed 62.
    h.advance(Duration::from_millis(61_600));
    h.caller_sends(&caller_in_dialog("BYE", &ok, "z9hG4bK-bye", 2).text());
    let ends = h.call_ends();
    assert_eq!(ends.len(), 1);
    let e: serde_json::Value = serde_json::from_str(&ends[0]).unwrap();
    assert_eq!(
        e,
        serde_json::json!({
            "Event": "Call_End",
            "CallID": "c1",
            "From": "sip:alice@customer.example",
            "To": "sip:+15551234@carrier.example",
            "SetupTime": 1700000000u64,
            "AnswerTime": 1700000002u64,
            "EndTime": 1700000063u64,
            "BillSec": 62,
            "Caller": "alice",
            "Answered": "yes",
            "Ended": "yes",
        })
    );
    h.take();
    // A call that is never answered has no Call_End.
    let (_, fwd) = h.start_call(&invite("c2", "z9hG4bK-c2"));
    h.deliver(fwd.dst, &response(&fwd, 486, Some("gw")));
    assert_eq!(h.call_ends().len(), 1);
}

#[test]
fn a_limit_reply_is_resent_to_retransmissions_and_counted_once() {
    let mut h = limited(1, DialogTimers::default());
    h.established_call("c1");
    let inv = invite("c2", "z9hG4bK-c2");
    h.caller_sends(&inv.text());
    let first = h.take_one();
    assert!(first.is_response(503), "{first:?}");
    // The INVITE again, after the first call ended: still the same answer, not a new check.
    h.caller_sends(&inv.text());
    let again = h.take_one();
    assert_eq!(again.text(), first.text());
    assert_eq!(h.stats.limits_rejected.get(), 1);
    // Unacknowledged, it is resent (Timer G); the ACK stops that.
    h.advance(t1s(1));
    assert!(h.take_one().is_response(503));
    h.caller_sends(&ack_non_2xx(&inv, &first).text());
    h.advance(t1s(8));
    h.expect_nothing();
}

/// A request names a dialog by its Call-ID and both tags: a BYE with another To tag is not
/// this dialog's and must not end it (nor free its places).
#[test]
fn a_bye_with_a_wrong_to_tag_gets_481_and_the_call_keeps_its_place() {
    let mut h = limited(1, DialogTimers::default());
    let call = h.established_call("c1");
    let bye = caller_in_dialog("BYE", &call.ok, "z9hG4bK-bye", 2)
        .text()
        .replace(";tag=gw-tag", ";tag=someone-else");
    h.caller_sends(&bye);
    let out = h.take_one();
    assert!(out.is_response(481), "{out:?}");
    assert_eq!(h.call_state("c1"), Some(DialogState::Confirmed));
    assert_eq!(h.alice(), 1);
}

/// Before the answer a BYE does not end the dialog: the INVITE's outcome does.
#[test]
fn a_bye_before_the_answer_leaves_the_dialog_to_its_invite() {
    let mut h = limited(1, DialogTimers::default());
    let inv = invite("c1", "z9hG4bK-a");
    let (_, fwd) = h.start_call(&inv);
    let ringing = h.gateway_answers(&fwd, &response(&fwd, 180, Some("gw-tag")));
    h.caller_sends(&caller_in_dialog("BYE", &ringing, "z9hG4bK-bye", 2).text());
    h.take();
    assert_eq!(h.call_state("c1"), Some(DialogState::Early));
    assert_eq!(h.alice(), 1);
    // Answered after all: the dialog is there, counted once.
    h.gateway_answers(&fwd, &response(&fwd, 200, Some("gw-tag")));
    assert_eq!(h.call_state("c1"), Some(DialogState::ConfirmedNoAck));
    assert_eq!(h.alice(), 1);
}

/// A re-INVITE and its 2xx refresh the remote targets (RFC 3261 §12.2): siplb's own BYEs
/// then go to the new Contacts.
#[test]
fn a_reinvite_refreshes_the_targets_of_both_sides() {
    let mut h = limited(5, DialogTimers::default());
    let call = h.established_call("c1");
    let mut reinvite = caller_in_dialog("INVITE", &call.ok, "z9hG4bK-re", 2);
    reinvite.extra = "Contact: <sip:alice@127.0.0.1:5999>\r\n".into();
    h.caller_sends(&reinvite.text());
    let fwd = h
        .take()
        .into_iter()
        .find(|o| o.is_request(Method::Invite))
        .expect("re-INVITE forwarded");
    let ok = response(&fwd, 200, None).replace(
        &format!("Contact: <sip:+15551234@{}>", fwd.dst),
        "Contact: <sip:gw@127.0.0.1:5998>",
    );
    h.deliver(fwd.dst, &ok);
    h.take();
    let c = h.shard.dialog(b"c1").unwrap();
    assert_eq!(&*c.caller_leg.contact, b"sip:alice@127.0.0.1:5999");
    assert_eq!(&*c.callee_leg.contact, b"sip:gw@127.0.0.1:5998");
}

mod auth;
mod events;
mod failover;
mod inbound;
mod probing;
