//! Shared inputs of siplb's micro benchmarks, and the rsip oracle tests: rsip (the chosen
//! crate for messages siplb builds) must read the same headers out of the benchmark messages
//! as siplb's own parser does, so the speed comparison is between parsers that agree.

/// A typical carrier INVITE with SDP, as a customer's SBC sends it.
pub const INVITE: &[u8] = b"INVITE sip:15550001234@198.18.0.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.1.20:5060;branch=z9hG4bK-524287-1---8a0bb3a2f1e3c2d0;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:acct001@198.18.1.20:5060>\r\n\
To: <sip:15550001234@198.18.0.10>\r\n\
From: \"Account 001\" <sip:acct001@198.18.1.20>;tag=6f7a3c21\r\n\
Call-ID: 3c26700863d4-1a2b3c4d5e6f@198.18.1.20\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, timer\r\n\
User-Agent: carrier-sbc 4.2\r\n\
P-Asserted-Identity: <sip:+15550009999@198.18.1.20>\r\n\
Content-Length: 233\r\n\
\r\n\
v=0\r\n\
o=- 3847562910 3847562910 IN IP4 198.18.1.20\r\n\
s=-\r\n\
c=IN IP4 198.18.1.20\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0 8 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

/// The gateway's 200 OK to it with the SDP answer, as it reaches siplb.
pub const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.18.0.10:5060;branch=z9hG4bK-5f3a.0.1c\r\n\
Via: SIP/2.0/UDP 198.18.1.20:5060;branch=z9hG4bK-524287-1---8a0bb3a2f1e3c2d0;received=198.18.1.20;rport=5060\r\n\
Record-Route: <sip:198.18.0.10:5060;lr;did=1c>\r\n\
Contact: <sip:15550001234@198.18.2.30:5060>\r\n\
To: <sip:15550001234@198.18.0.10>;tag=as58f4201b\r\n\
From: \"Account 001\" <sip:acct001@198.18.1.20>;tag=6f7a3c21\r\n\
Call-ID: 3c26700863d4-1a2b3c4d5e6f@198.18.1.20\r\n\
CSeq: 1 INVITE\r\n\
Server: gateway 1.0\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 178\r\n\
\r\n\
v=0\r\n\
o=gw 1234567 1234567 IN IP4 198.18.2.30\r\n\
s=-\r\n\
c=IN IP4 198.18.2.30\r\n\
t=0 0\r\n\
m=audio 31000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

/// What a proxy reads of every message it handles, as lengths (so that neither side has to
/// copy): Call-ID, CSeq number, top-Via branch, To tag.
pub type Seen = (usize, u32, Option<usize>, Option<usize>);

/// siplb: parse, then read what the proxy reads.
pub fn siplb_read(bytes: &[u8]) -> Seen {
    let m = siplb::sip::SipMsg::parse(bytes).expect("valid");
    (
        m.call_id().len(),
        m.cseq,
        m.branch().map(<[u8]>::len),
        m.to_tag().map(<[u8]>::len),
    )
}

/// rsip: parse, then read the same through its typed headers.
pub fn rsip_read(bytes: &[u8]) -> Seen {
    use rsip::headers::UntypedHeader;
    use rsip::prelude::{HeadersExt, ToTypedHeader};
    let m = rsip::SipMessage::try_from(bytes).expect("valid");
    let call_id = m.call_id_header().expect("Call-ID").value().len();
    let cseq = m.cseq_header().expect("CSeq").typed().expect("CSeq").seq;
    let via = m.via_header().expect("Via").typed().expect("Via");
    let branch = via.branch().map(|b| b.to_string().len());
    let to_tag = m
        .to_header()
        .expect("To")
        .tag()
        .expect("To")
        .map(|t| t.value().len());
    (call_id, cseq, branch, to_tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::headers::UntypedHeader;
    use rsip::message::HasHeaders;
    use siplb::sip::SipMsg;

    fn rsip_header<'a>(m: &'a rsip::SipMessage, name: &str) -> Option<&'a str> {
        m.headers().iter().find_map(|h| match (h, name) {
            (rsip::Header::CallId(v), "Call-ID") => Some(v.value()),
            (rsip::Header::CSeq(v), "CSeq") => Some(v.value()),
            (rsip::Header::From(v), "From") => Some(v.value()),
            (rsip::Header::To(v), "To") => Some(v.value()),
            _ => None,
        })
    }

    #[test]
    fn siplb_and_rsip_agree_on_the_benchmark_messages() {
        for bytes in [INVITE, OK] {
            let ours = SipMsg::parse(bytes).expect("siplb parses it");
            let theirs = rsip::SipMessage::try_from(bytes).expect("rsip parses it");
            assert_eq!(
                ours.call_id(),
                rsip_header(&theirs, "Call-ID").unwrap().as_bytes()
            );
            assert_eq!(
                ours.span(ours.from().unwrap().uri),
                b"sip:acct001@198.18.1.20"
            );
            assert!(
                rsip_header(&theirs, "From")
                    .unwrap()
                    .contains("tag=6f7a3c21")
            );
            assert_eq!(ours.from_tag(), Some(&b"6f7a3c21"[..]));
            let cseq = rsip_header(&theirs, "CSeq").unwrap();
            assert_eq!(cseq, format!("{} INVITE", ours.cseq));
            assert_eq!(ours.body.len(), theirs.body().len());
            assert_eq!(siplb_read(bytes), rsip_read(bytes));
        }
        assert_eq!(siplb_read(OK).3, Some(b"as58f4201b".len()));
        assert_eq!(
            siplb_read(INVITE).2,
            Some(b"z9hG4bK-524287-1---8a0bb3a2f1e3c2d0".len())
        );
    }
}
