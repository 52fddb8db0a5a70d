use super::*;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

#[test]
fn parses_basic_invite() {
    let m = SipMsg::parse(INVITE).unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.call_id(), b"a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(m.from_tag(), Some(&b"1928301774"[..]));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.cseq, 314159);
    assert_eq!(m.branch(), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(m.span(m.body), b"v=0\n");
    assert_eq!(m.max_forwards.map(|m| m.0), Some(70));
}
