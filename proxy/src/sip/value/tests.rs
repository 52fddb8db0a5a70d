use super::*;

fn sp(b: &[u8]) -> Span {
    Span::new(0, b.len())
}

#[test]
fn comma_list_respects_quotes_and_brackets() {
    let b = br#""a, b" <sip:x;p=1,2>, <sip:y>,sip:z"#;
    let v: Vec<_> = CommaList::new(b, sp(b))
        .map(|r| r.unwrap().of(b).to_vec())
        .collect();
    assert_eq!(
        v,
        vec![
            br#""a, b" <sip:x;p=1,2>"#.to_vec(),
            b"<sip:y>".to_vec(),
            b"sip:z".to_vec()
        ]
    );
    let bad = br#""unbalanced, x"#;
    assert!(CommaList::new(bad, sp(bad)).any(|r| r.is_err()));
}

#[test]
fn name_addr_forms() {
    let b = br#""J \"Rosenberg\" <x>" <sip:j@example.com;transport=udp>;tag=98asjd8"#;
    let na = NameAddr::parse(b, sp(b)).unwrap();
    assert_eq!(na.uri.of(b), b"sip:j@example.com;transport=udp");
    assert_eq!(na.tag(b).unwrap().of(b), b"98asjd8");
    let b = b"sip:j@example.com;tag=abc";
    let na = NameAddr::parse(b, sp(b)).unwrap();
    assert_eq!(na.uri.of(b), b"sip:j@example.com");
    assert_eq!(na.tag(b).unwrap().of(b), b"abc");
    assert!(NameAddr::parse(b"<sip:unclosed", sp(b"<sip:unclosed")).is_err());
    let b = b"caller<sip:caller@example.com>;tag=323";
    assert_eq!(
        NameAddr::parse(b, sp(b)).unwrap().uri.of(b),
        b"sip:caller@example.com"
    );
    let b = b"<name:John_Smith>";
    assert_eq!(
        NameAddr::parse(b, sp(b)).unwrap().uri.of(b),
        b"name:John_Smith"
    );
}

#[test]
fn name_addr_rejects_malformed_forms() {
    for bad in [
        &b"Bell, Alexander <sip:a.g.bell@example.com>;tag=43"[..],
        b"\"Watson, Thomas\" < sip:t.watson@example.org >",
        b"sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        b"<sip:a@h> junk",
        b"<>",
        b"no-scheme",
        b":no-scheme",
        b"\"Name\" sip:a@h",
        b"\"unbalanced <sip:a@h>",
    ] {
        assert!(
            NameAddr::parse(bad, sp(bad)).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn uri_hosts_and_ports() {
    let b = b"sip:user@[2001:db8::10]:5070;lr;did=1";
    let u = SipUri::parse(b, sp(b)).unwrap();
    assert_eq!(u.host.of(b), b"[2001:db8::10]");
    assert_eq!(u.port, Some(5070));
    assert_eq!(param(b, u.params, b"did").unwrap().of(b), b"1");
    assert_eq!(host_ip(u.host.of(b)), Some("2001:db8::10".parse().unwrap()));
    let b = b"sip:127.0.0.1;lr";
    let u = SipUri::parse(b, sp(b)).unwrap();
    assert_eq!(
        (u.host.of(b), u.port, u.user),
        (&b"127.0.0.1"[..], None, None)
    );
    assert_eq!(
        SipUri::parse(b"unknownscheme:x", sp(b"unknownscheme:x")),
        Err(true)
    );
    assert_eq!(
        SipUri::parse(b"sip:[2001:db8::10", sp(b"sip:[2001:db8::10")),
        Err(false)
    );
    assert_eq!(
        SipUri::parse(b"sip:h:99999", sp(b"sip:h:99999")),
        Err(false)
    );
}

#[test]
fn via_with_odd_white_space() {
    let b = b"SIP / 2.0 / UDP 192.0.2.1:5060 ;branch=z9hG4bK1;rport";
    let v = Via::parse(b, sp(b)).unwrap();
    assert_eq!(v.transport.of(b), b"UDP");
    assert_eq!(v.host.of(b), b"192.0.2.1");
    assert_eq!(v.port, Some(5060));
    assert_eq!(v.branch(b).unwrap().of(b), b"z9hG4bK1");
    assert!(param(b, v.params, b"rport").unwrap().is_empty());
    let b = b"SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3";
    assert_eq!(Via::parse(b, sp(b)).unwrap().host.of(b), b"[2001:db8::9:1]");
    assert!(Via::parse(b"SIP/3.0/UDP h", sp(b"SIP/3.0/UDP h")).is_err());
    assert!(Via::parse(b"SIP/2.0/UDP", sp(b"SIP/2.0/UDP")).is_err());
}

#[test]
fn numbers() {
    assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
    assert_eq!(parse_u32(b"4294967296"), None);
    assert_eq!(parse_u32(b"-1"), None);
    assert_eq!(parse_u32(b""), None);
    assert_eq!(parse_u32(b"99999999999999999999"), None);
}

#[test]
fn locate_finds_uri_and_params_without_judging() {
    for (v, uri, tag) in [
        (&b"<sip:b@h>;tag=x1"[..], &b"sip:b@h"[..], Some(&b"x1"[..])),
        (b"\"A <, B\" <sip:b@h>;tag=x2", b"sip:b@h", Some(b"x2")),
        (b"sip:b@h;tag=x3", b"sip:b@h", Some(b"x3")),
        (b"sip:b@h", b"sip:b@h", None),
        (b"Bell, Alexander <sip:a@h>;tag=x4", b"sip:a@h", Some(b"x4")),
    ] {
        let na = NameAddr::locate(v, sp(v)).unwrap();
        assert_eq!(na.uri.of(v), uri);
        assert_eq!(na.tag(v).map(|t| t.of(v)), tag);
    }
    assert!(NameAddr::locate(b"<sip:unclosed", sp(b"<sip:unclosed")).is_none());
}

#[test]
fn via_branch_fast_and_slow_paths_agree() {
    for v in [
        &b"SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport"[..],
        b"SIP/2.0/UDP h;BRANCH=z9hG4bK1",
        b"SIP/2.0/UDP h;rport;branch=z9hG4bK1",
        b"SIP/2.0/UDP h;branch= z9hG4bK1 ;ttl=1",
    ] {
        let via = Via::parse(v, sp(v)).unwrap();
        assert_eq!(
            via.branch(v).unwrap().of(v),
            b"z9hG4bK1",
            "{:?}",
            std::str::from_utf8(v)
        );
    }
}

/// [`user_and_host_ends`] as its documentation says it, one search at a time.
fn ends_as_documented(b: &[u8]) -> (Option<usize>, usize) {
    let is_sep = |c: &u8| *c == b';' || *c == b'?';
    let sep = b.iter().position(is_sep).unwrap_or(b.len());
    match b[..sep].iter().rposition(|&c| c == b'@') {
        Some(at) => (Some(at), sep),
        None => match b.iter().position(|&c| c == b'@') {
            Some(at) => {
                let end = b[at + 1..]
                    .iter()
                    .position(is_sep)
                    .map_or(b.len(), |q| at + 1 + q);
                (Some(at), end)
            }
            None => (None, sep),
        },
    }
}

#[test]
fn the_user_and_host_part_end_where_their_definition_says() {
    for u in [
        &b"alice@example.com"[..],
        b"alice@example.com:5060;transport=udp?subject=x",
        b"a;b=c@host;lr",
        b"a@b@host",
        b"host;p=a@b",
        b"host?h=a@b;c",
        b"a%40b@[::1]:5060",
        b"",
        b"@",
        b";@",
        b"@;@?",
    ] {
        assert_eq!(user_and_host_ends(u), ends_as_documented(u), "{u:?}");
    }
    // Every string of up to 6 bytes of the ones that matter, and a letter.
    let alphabet = b"@;?a";
    for len in 0..=6u32 {
        for mut n in 0..alphabet.len().pow(len) {
            let mut u = Vec::new();
            for _ in 0..len {
                u.push(alphabet[n % alphabet.len()]);
                n /= alphabet.len();
            }
            assert_eq!(user_and_host_ends(&u), ends_as_documented(&u), "{u:?}");
        }
    }
}

#[test]
fn a_user_may_hold_a_semicolon_and_ends_at_the_last_at_sign_before_the_parameters() {
    let b = b"sip:a;b=c@host:5070;lr";
    let u = SipUri::parse(b, sp(b)).unwrap();
    assert_eq!(u.user.unwrap().of(b), b"a;b=c");
    assert_eq!((u.host.of(b), u.port), (&b"host"[..], Some(5070)));
    assert_eq!(u.params.of(b), b";lr");
    let b = b"sip:a@b@host?x=y";
    let u = SipUri::parse(b, sp(b)).unwrap();
    assert_eq!(
        (u.user.unwrap().of(b), u.host.of(b)),
        (&b"a@b"[..], &b"host"[..])
    );
    assert_eq!(u.params.of(b), b"");
    // No `@` before the parameters: the user runs to the first one after them.
    let b = b"sip:host;p=a@b";
    assert_eq!(
        SipUri::user_and_host(b, sp(b)),
        (&b"host;p=a"[..], &b"b"[..])
    );
}
