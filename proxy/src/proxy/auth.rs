//! Digest authentication towards trunks (Kamailio's `uac_auth()`): the challenge of a 401
//! (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`) and the header that answers it, for MD5
//! and SHA-256 (RFC 8760), with `qop=auth` or without `qop` (RFC 2617), from a password or an
//! MD5 HA1. The challenge is read here as RFC 3261 §25.1 writes it (parameter names and the
//! algorithm and qop tokens in any case, white space around `=`, quoted strings with their
//! escapes and UTF-8); the hashes are the `digest_auth` crate's. Pure: the client nonce is
//! given.

use super::gateway::{Credentials, Secret};
use crate::sip::SipMsg;
use digest_auth::{Algorithm, AlgorithmType};
use std::fmt::Write;

/// A challenge siplb can answer.
#[derive(Debug, Clone)]
pub struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    stale: bool,
    algorithm: Algorithm,
    /// The `qop` tokens offered, lower case; none when the challenge has no `qop`.
    qop: Option<Vec<String>>,
    /// 407 (a proxy's): answered with `Proxy-Authorization`; 401: `Authorization`.
    pub proxy: bool,
}

impl Challenge {
    /// The nonce was stale: the credentials were right, the gateway wants them again.
    pub fn stale(&self) -> bool {
        self.stale
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Both ask for credentials of one realm from the same kind of server (a proxy's 407 or
    /// a server's 401).
    pub fn same_realm(&self, other: &Challenge) -> bool {
        self.proxy == other.proxy && self.realm == other.realm
    }
}

/// A challenge siplb has answered for a request, kept while the request may be challenged
/// again by another server on its way (an SBC's 407, then the softswitch's 401 behind it):
/// each resend answers every one of them.
#[derive(Debug, Clone)]
pub struct Answered {
    pub challenge: Challenge,
    /// Answers made to its nonce so far (the next one's `nc`).
    pub uses: u32,
    /// It was answered again after a stale nonce.
    pub renewed: bool,
}

/// The first Digest challenge of response `msg` (401 or 407) whose algorithm siplb knows,
/// SHA-256 preferred when several are offered.
pub fn challenge(msg: &SipMsg<'_>) -> Option<Challenge> {
    preferring(msg, AlgorithmType::SHA2_256)
}

/// The challenge of `msg` that `creds` answer best: SHA-256 preferred with a password, MD5
/// with an HA1 (an MD5 hash, which answers nothing else).
pub fn challenge_for(msg: &SipMsg<'_>, creds: &Credentials) -> Option<Challenge> {
    match creds.secret {
        Secret::Password(_) => preferring(msg, AlgorithmType::SHA2_256),
        Secret::Ha1(_) => preferring(msg, AlgorithmType::MD5),
    }
}

/// The first Digest challenge of `msg` whose algorithm siplb knows, the first of algorithm
/// `preferred` when there is one.
fn preferring(msg: &SipMsg<'_>, preferred: AlgorithmType) -> Option<Challenge> {
    let (name, proxy): (&[u8], bool) = match msg.status()? {
        401 => (b"WWW-Authenticate", false),
        407 => (b"Proxy-Authenticate", true),
        _ => return None,
    };
    let buf = msg.buf;
    let mut best: Option<Challenge> = None;
    for h in msg.headers() {
        if !h.name_bytes(buf).eq_ignore_ascii_case(name) {
            continue;
        }
        let Ok(v) = std::str::from_utf8(h.value().of(buf)) else {
            continue;
        };
        let Some(parsed) = parse(v, proxy) else {
            continue;
        };
        let better = match &best {
            None => true,
            Some(b) => b.algorithm.algo != preferred && parsed.algorithm.algo == preferred,
        };
        if better {
            best = Some(parsed);
        }
    }
    best
}

/// One `Digest` challenge (`Digest realm="r", nonce="n", …`); none when it is not Digest,
/// lacks a realm or nonce, names an algorithm siplb does not know, or holds a control
/// character (it could not be written back into a request).
fn parse(value: &str, proxy: bool) -> Option<Challenge> {
    let v = value.trim();
    let scheme = v.get(..6)?;
    if !scheme.eq_ignore_ascii_case("Digest") || !v[6..].starts_with([' ', '\t']) {
        return None;
    }
    let mut ch = Challenge {
        realm: String::new(),
        nonce: String::new(),
        opaque: None,
        stale: false,
        algorithm: Algorithm::new(AlgorithmType::MD5, false),
        qop: None,
        proxy,
    };
    let (mut realm, mut nonce) = (false, false);
    let mut rest = &v[6..];
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let name_len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        if name_len == 0 {
            return None;
        }
        let name = rest[..name_len].to_ascii_lowercase();
        rest = rest[name_len..].trim_start_matches([' ', '\t']);
        rest = rest.strip_prefix('=')?.trim_start_matches([' ', '\t']);
        let (value, after) = if let Some(q) = rest.strip_prefix('"') {
            unquote(q)?
        } else {
            let n = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
            (rest[..n].to_string(), &rest[n..])
        };
        rest = after;
        if value.chars().any(char::is_control) {
            return None;
        }
        match name.as_str() {
            "realm" if !realm => (ch.realm, realm) = (value, true),
            "nonce" if !nonce => (ch.nonce, nonce) = (value, true),
            "opaque" => ch.opaque = Some(value),
            "stale" => ch.stale = value.eq_ignore_ascii_case("true"),
            "algorithm" => ch.algorithm = algorithm(&value)?,
            "qop" => {
                ch.qop = Some(
                    value
                        .split(',')
                        .map(|t| t.trim().to_ascii_lowercase())
                        .filter(|t| !t.is_empty())
                        .collect(),
                )
            }
            _ => {}
        }
    }
    (realm && nonce).then_some(ch)
}

/// An algorithm siplb answers, named in any case.
fn algorithm(name: &str) -> Option<Algorithm> {
    let n = name.to_ascii_uppercase();
    let (base, sess) = match n.strip_suffix("-SESS") {
        Some(b) => (b, true),
        None => (n.as_str(), false),
    };
    match base {
        "MD5" => Some(Algorithm::new(AlgorithmType::MD5, sess)),
        "SHA-256" => Some(Algorithm::new(AlgorithmType::SHA2_256, sess)),
        _ => None,
    }
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// The text of a quoted string whose opening quote is already taken, with its escapes
/// undone, and what follows its closing quote; none when it does not close.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// `text` as a quoted string's inside: `"` and `\` escaped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The header line (with its CRLF) that answers `ch` for a request `method` to `uri` with
/// `creds`, client nonce `cnonce`, the `nc`-th answer to its nonce (from 1); `body` is the
/// request's body, which `qop=auth-int` covers (used when `auth` is not offered). None when the
/// credentials cannot answer it (an MD5 HA1 for a SHA-256 challenge, or `qop` offered with
/// neither `auth` nor `auth-int`).
pub fn authorization(
    ch: &Challenge,
    creds: &Credentials,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
    body: &[u8],
) -> Option<String> {
    let algo = ch.algorithm;
    let qop = match &ch.qop {
        None => None,
        Some(list) if list.iter().any(|q| q == "auth") => Some("auth"),
        Some(list) if list.iter().any(|q| q == "auth-int") => Some("auth-int"),
        Some(_) => return None,
    };
    let ha1 = match &creds.secret {
        Secret::Password(p) => algo.hash_str(&format!("{}:{}:{p}", creds.user, ch.realm)),
        Secret::Ha1(hex) if algo.algo == AlgorithmType::MD5 => hex.clone(),
        Secret::Ha1(_) => return None,
    };
    let ha1 = if algo.sess {
        algo.hash_str(&format!("{ha1}:{}:{cnonce}", ch.nonce))
    } else {
        ha1
    };
    // RFC 2617 §3.2.2.3: auth-int also covers the body, as H(body).
    let ha2 = if qop == Some("auth-int") {
        algo.hash_str(&format!("{method}:{uri}:{}", algo.hash(body)))
    } else {
        algo.hash_str(&format!("{method}:{uri}"))
    };
    let nc = format!("{nc:08x}");
    let response = match qop {
        Some(qop) => algo.hash_str(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", ch.nonce)),
        None => algo.hash_str(&format!("{ha1}:{}:{ha2}", ch.nonce)),
    };
    let name = if ch.proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    };
    let mut out = format!(
        "{name}: Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", \
         response=\"{response}\", algorithm={algo}",
        quoted(&creds.user),
        quoted(&ch.realm),
        quoted(&ch.nonce),
        quoted(uri)
    );
    if let Some(qop) = qop {
        let _ = write!(out, ", qop={qop}, nc={nc}, cnonce=\"{}\"", quoted(cnonce));
    } else if algo.sess {
        // The session key covers the cnonce, so the server must read it, `qop` or not.
        let _ = write!(out, ", cnonce=\"{}\"", quoted(cnonce));
    }
    if let Some(o) = &ch.opaque {
        let _ = write!(out, ", opaque=\"{}\"", quoted(o));
    }
    out.push_str("\r\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            user: "siplb".into(),
            secret: Secret::Password("trunk-secret".into()),
        }
    }

    fn reply(code: u16, header: &str) -> String {
        format!(
            "SIP/2.0 {code} Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             {header}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    fn field<'a>(h: &'a str, name: &str) -> &'a str {
        let at = h.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let rest = &h[at..];
        if let Some(r) = rest.strip_prefix('"') {
            &r[..r.find('"').unwrap()]
        } else {
            rest.split([',', '\r']).next().unwrap()
        }
    }

    /// RFC 2617 §3.5's worked example, with SIP's method: the response is what a digest
    /// server computes from the same values (MD5, qop=auth).
    #[test]
    fn an_md5_qop_auth_challenge_is_answered_as_rfc_2617_computes_it() {
        let text = reply(
            407,
            "Proxy-Authenticate: Digest realm=\"trunk.example\", nonce=\"abc\", qop=\"auth\", \
             opaque=\"op\"",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        let ch = challenge(&msg).unwrap();
        assert!(ch.proxy && !ch.stale());
        let h = authorization(
            &ch,
            &creds(),
            "INVITE",
            "sip:+1555@198.18.2.30",
            "cn",
            1,
            b"",
        )
        .unwrap();
        assert!(h.starts_with("Proxy-Authorization: Digest "), "{h}");
        let md5 = |s: &str| digest_auth::Algorithm::new(AlgorithmType::MD5, false).hash_str(s);
        let ha1 = md5("siplb:trunk.example:trunk-secret");
        let ha2 = md5("INVITE:sip:+1555@198.18.2.30");
        let want = md5(&format!("{ha1}:abc:00000001:cn:auth:{ha2}"));
        assert_eq!(field(&h, "response"), want);
        assert_eq!(field(&h, "opaque"), "op");
        assert_eq!(field(&h, "nc"), "00000001");
    }

    /// `qop=auth-int` alone: H(A2) covers the body as H(body) (RFC 2617 §3.2.2.3), and the
    /// n-th answer to one nonce says so in `nc`.
    #[test]
    fn an_auth_int_challenge_is_answered_over_the_body() {
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"abc\", qop=\"auth-int\"",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        let ch = challenge(&msg).unwrap();
        let body = b"v=0\r\no=- 1 1 IN IP4 198.18.1.20\r\n";
        let h = authorization(&ch, &creds(), "INVITE", "sip:x@gw", "cn", 3, body).unwrap();
        let md5 = |s: &str| digest_auth::Algorithm::new(AlgorithmType::MD5, false).hash_str(s);
        let md5_body = digest_auth::Algorithm::new(AlgorithmType::MD5, false).hash(body);
        let ha1 = md5("siplb:r:trunk-secret");
        let ha2 = md5(&format!("INVITE:sip:x@gw:{md5_body}"));
        let want = md5(&format!("{ha1}:abc:00000003:cn:auth-int:{ha2}"));
        assert_eq!(field(&h, "response"), want);
        assert!(h.contains("qop=auth-int, nc=00000003"), "{h}");
        // With both offered, auth is taken.
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"abc\", qop=\"auth-int,auth\"",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        let h = authorization(
            &challenge(&msg).unwrap(),
            &creds(),
            "INVITE",
            "sip:x@gw",
            "cn",
            1,
            body,
        )
        .unwrap();
        assert!(h.contains("qop=auth,"), "{h}");
    }

    #[test]
    fn sha_256_is_preferred_and_a_challenge_without_qop_is_answered_as_rfc_2617_allows() {
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=MD5\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        let ch = challenge(&msg).unwrap();
        assert!(!ch.proxy);
        let h = authorization(&ch, &creds(), "BYE", "sip:gw", "cn", 1, b"").unwrap();
        assert!(h.starts_with("Authorization: Digest "), "{h}");
        assert_eq!(field(&h, "algorithm"), "SHA-256");
        assert!(!h.contains("qop="), "{h}");
        let sha = |s: &str| digest_auth::Algorithm::new(AlgorithmType::SHA2_256, false).hash_str(s);
        let want = sha(&format!(
            "{}:n:{}",
            sha("siplb:r:trunk-secret"),
            sha("BYE:sip:gw")
        ));
        assert_eq!(field(&h, "response"), want);
    }

    #[test]
    fn an_ha1_stands_in_for_the_password_of_an_md5_challenge_only() {
        let md5 = |s: &str| digest_auth::Algorithm::new(AlgorithmType::MD5, false).hash_str(s);
        let by_ha1 = Credentials {
            user: "siplb".into(),
            secret: Secret::Ha1(md5("siplb:r:trunk-secret")),
        };
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", stale=true",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        let ch = challenge(&msg).unwrap();
        assert!(ch.stale());
        assert_eq!(
            authorization(&ch, &by_ha1, "INVITE", "sip:x", "c", 1, b""),
            authorization(&ch, &creds(), "INVITE", "sip:x", "c", 1, b"")
        );
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        assert!(
            authorization(
                &challenge(&msg).unwrap(),
                &by_ha1,
                "INVITE",
                "sip:x",
                "c",
                1,
                b""
            )
            .is_none()
        );
        // Offered both: the HA1 answers the MD5 one, a password the SHA-256 one.
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=MD5",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        let by_ha1_ch = challenge_for(&msg, &by_ha1).unwrap();
        assert_eq!(by_ha1_ch.algorithm.algo, AlgorithmType::MD5);
        assert!(authorization(&by_ha1_ch, &by_ha1, "INVITE", "sip:x", "c", 1, b"").is_some());
        let by_password = challenge_for(&msg, &creds()).unwrap();
        assert_eq!(by_password.algorithm.algo, AlgorithmType::SHA2_256);
    }

    #[test]
    fn no_digest_challenge_no_answer() {
        let text = reply(401, "WWW-Authenticate: Basic realm=\"r\"");
        assert!(challenge(&SipMsg::parse(text.as_bytes()).unwrap()).is_none());
        let text = reply(403, "X: y");
        assert!(challenge(&SipMsg::parse(text.as_bytes()).unwrap()).is_none());
    }

    /// Challenges made of the pieces parsers trip over, ASCII or not: each is answered or
    /// passed on, none panics (a UTF-8 realm panicked in the digest parser).
    #[test]
    fn any_challenge_is_answered_or_passed_on_never_a_panic() {
        const PIECES: &[&str] = &[
            "Digest ",
            "digest",
            "realm",
            "nonce",
            "qop",
            "algorithm",
            "opaque",
            "stale",
            "=",
            "\"",
            ",",
            " ",
            "\\",
            "auth",
            "auth-int",
            "MD5",
            "SHA-256",
            "true",
            "ä",
            "тест",
            "€",
            "x",
            "0",
            ";",
            "\t",
            "=\"\"",
        ];
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..20_000 {
            let mut v = String::from(if round % 2 == 0 { "Digest " } else { "" });
            for _ in 0..next() % 16 {
                v += PIECES[next() as usize % PIECES.len()];
            }
            let text = reply(401, &format!("WWW-Authenticate: {v}"));
            if let Ok(msg) = SipMsg::parse(text.as_bytes())
                && let Some(ch) = challenge(&msg)
            {
                let _ = authorization(&ch, &creds(), "INVITE", "sip:x@y", "c1", 1, b"");
            }
        }
        // A UTF-8 realm (a panic half the time in the digest crate's parser) is answered,
        // hashed over its UTF-8 bytes.
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"тест\", nonce=\"abc\"",
        );
        let ch = challenge(&SipMsg::parse(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(ch.realm(), "тест");
    }

    /// RFC 3261 §25.1: parameter names and the algorithm's and qop's tokens in any case,
    /// white space around `=`; each form is answered as the plain one is.
    #[test]
    fn a_challenge_is_read_whatever_its_case_and_spacing() {
        let plain = "Digest realm=\"r\", nonce=\"n\", algorithm=MD5, qop=\"auth\"";
        let answer = |v: &str| {
            let text = reply(401, &format!("WWW-Authenticate: {v}"));
            let msg = SipMsg::parse(text.as_bytes()).unwrap();
            let ch = challenge(&msg).unwrap_or_else(|| panic!("not read: {v}"));
            authorization(&ch, &creds(), "INVITE", "sip:x", "c1", 1, b"")
        };
        let want = answer(plain).unwrap();
        for v in [
            "digest REALM=\"r\", NONCE=\"n\", Algorithm=md5, QOP=\"AUTH\"",
            "Digest realm = \"r\" ,nonce= \"n\",algorithm =MD5,qop=\"auth,auth-int\"",
            "Digest   realm=\"r\",\tnonce=\"n\", qop=auth",
        ] {
            assert_eq!(answer(v).as_deref(), Some(want.as_str()), "{v}");
        }
        let sha = answer("Digest realm=\"r\", nonce=\"n\", algorithm=sha-256-SESS").unwrap();
        assert!(sha.contains("algorithm=SHA-256-sess"), "{sha}");
        // A -sess algorithm without qop: the cnonce its session key covers is sent too, and
        // the response is the one RFC 2617 §3.2.2.2 computes with it.
        let sess = answer("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess").unwrap();
        assert!(
            sess.contains("cnonce=\"c1\"") && !sess.contains("qop="),
            "{sess}"
        );
        let md5 = |s: &str| digest_auth::Algorithm::new(AlgorithmType::MD5, false).hash_str(s);
        let ha1 = md5(&format!("{}:n:c1", md5("siplb:r:trunk-secret")));
        let want = md5(&format!("{ha1}:n:{}", md5("INVITE:sip:x")));
        assert!(sess.contains(&format!("response=\"{want}\"")), "{sess}");
        // qop offered with neither auth nor auth-int: passed on to the caller.
        assert!(answer("Digest realm=\"r\", nonce=\"n\", qop=\"auth-conf\"").is_none());
    }

    /// Values are written back quoted as the grammar wants, escapes and all; a value with a
    /// control character is not answered (it could not be written into a request).
    #[test]
    fn values_are_quoted_again_and_control_characters_refused() {
        let text = reply(
            407,
            "Proxy-Authenticate: Digest realm=\"a\\\"b\", nonce=\"n\\\\x\", opaque=\"o\\\"\"",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        let ch = challenge(&msg).unwrap();
        assert_eq!(ch.realm(), "a\"b");
        let h = authorization(&ch, &creds(), "INVITE", "sip:x", "c1", 1, b"").unwrap();
        assert!(h.contains("realm=\"a\\\"b\", nonce=\"n\\\\x\""), "{h}");
        assert!(h.contains("opaque=\"o\\\"\""), "{h}");
        let md5 = |s: &str| digest_auth::Algorithm::new(AlgorithmType::MD5, false).hash_str(s);
        let ha1 = md5("siplb:a\"b:trunk-secret");
        let want = md5(&format!("{ha1}:n\\x:{}", md5("INVITE:sip:x")));
        assert!(h.contains(&format!("response=\"{want}\"")), "{h}");
        for bad in ["r\u{0}", "r\u{7f}x", "\u{1b}[5m"] {
            let text = reply(
                401,
                &format!("WWW-Authenticate: Digest realm=\"{bad}\", nonce=\"n\""),
            );
            if let Ok(msg) = SipMsg::parse(text.as_bytes()) {
                assert!(challenge(&msg).is_none(), "{bad:?}");
            }
        }
    }
}
