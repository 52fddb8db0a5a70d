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
                slot: 0,
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

/// A harness whose customer's account is the From user (`alice`), limited to `max` calls,
/// with profile `total` and the given dialog timeouts.
fn limited(max: u32, timers: DialogTimers) -> Harness {
    limited_with(max, timers, |_| {})
}

/// [`limited`], then `f` applied to the config.
fn limited_with(max: u32, timers: DialogTimers, f: impl FnOnce(&mut ProxyConfig)) -> Harness {
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
        f(c);
    })
}

mod auth;
mod cleanup;
mod dialogs;
mod events;
mod failover;
mod fuzz;
mod garbled;
mod inbound;
mod invite;
mod non_invite;
mod parked;
mod probing;
mod refusals;
mod restart;
