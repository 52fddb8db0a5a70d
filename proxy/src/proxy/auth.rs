//! Digest authentication towards trunks (Kamailio's `uac_auth()`): the challenge of a 401
//! (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`) and the header that answers it, for MD5
//! and SHA-256 (RFC 8760), with `qop=auth` or without `qop` (RFC 2617), from a password or an
//! MD5 HA1. The challenge is parsed and hashed with the `digest_auth` crate; the answer is
//! composed here because an HA1 stands in for the password. Pure: the client nonce is given.

use super::gateway::{Credentials, Secret};
use crate::sip::SipMsg;
use digest_auth::{AlgorithmType, Qop, WwwAuthenticateHeader};
use std::fmt::Write;

/// A challenge siplb can answer.
#[derive(Debug, Clone)]
pub struct Challenge {
    header: WwwAuthenticateHeader,
    /// 407 (a proxy's): answered with `Proxy-Authorization`; 401: `Authorization`.
    pub proxy: bool,
}

impl Challenge {
    /// The nonce was stale: the credentials were right, the gateway wants them again.
    pub fn stale(&self) -> bool {
        self.header.stale
    }

    pub fn realm(&self) -> &str {
        &self.header.realm
    }
}

/// The first Digest challenge of response `msg` (401 or 407) whose algorithm siplb knows,
/// SHA-256 preferred when several are offered.
pub fn challenge(msg: &SipMsg<'_>) -> Option<Challenge> {
    let (name, proxy): (&[u8], bool) = match msg.status()? {
        401 => (b"WWW-Authenticate", false),
        407 => (b"Proxy-Authenticate", true),
        _ => return None,
    };
    let buf = msg.buf;
    let mut best: Option<WwwAuthenticateHeader> = None;
    for h in msg.headers() {
        if !h.name_bytes(buf).eq_ignore_ascii_case(name) {
            continue;
        }
        let Ok(v) = std::str::from_utf8(h.value().of(buf)) else {
            continue;
        };
        let v = v.trim();
        // ASCII only: the digest parser takes character counts for byte offsets, and a
        // challenge with a UTF-8 realm is passed on to the caller unanswered instead.
        if !v.is_ascii() || v.len() < 7 || !v[..6].eq_ignore_ascii_case("Digest") {
            continue;
        }
        let Ok(parsed) = digest_auth::parse(&format!("Digest{}", &v[6..])) else {
            continue;
        };
        if parsed.algorithm.algo == AlgorithmType::SHA2_512_256 {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => {
                b.algorithm.algo == AlgorithmType::MD5
                    && parsed.algorithm.algo == AlgorithmType::SHA2_256
            }
        };
        if better {
            best = Some(parsed);
        }
    }
    best.map(|header| Challenge { header, proxy })
}

/// The header line (with its CRLF) that answers `ch` for a request `method` to `uri` with
/// `creds`, client nonce `cnonce`; none when the credentials cannot answer it (an MD5 HA1 for
/// a SHA-256 challenge, or `qop` offered without `auth`).
pub fn authorization(
    ch: &Challenge,
    creds: &Credentials,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    let h = &ch.header;
    let algo = h.algorithm;
    let qop_auth = match &h.qop {
        None => false,
        Some(list) if list.contains(&Qop::AUTH) => true,
        Some(_) => return None,
    };
    let ha1 = match &creds.secret {
        Secret::Password(p) => algo.hash_str(&format!("{}:{}:{p}", creds.user, h.realm)),
        Secret::Ha1(hex) if algo.algo == AlgorithmType::MD5 => hex.clone(),
        Secret::Ha1(_) => return None,
    };
    let ha1 = if algo.sess {
        algo.hash_str(&format!("{ha1}:{}:{cnonce}", h.nonce))
    } else {
        ha1
    };
    let ha2 = algo.hash_str(&format!("{method}:{uri}"));
    let nc = "00000001";
    let response = if qop_auth {
        algo.hash_str(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", h.nonce))
    } else {
        algo.hash_str(&format!("{ha1}:{}:{ha2}", h.nonce))
    };
    let name = if ch.proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    };
    let mut out = format!(
        "{name}: Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={algo}",
        creds.user, h.realm, h.nonce
    );
    if qop_auth {
        let _ = write!(out, ", qop=auth, nc={nc}, cnonce=\"{cnonce}\"");
    }
    if let Some(o) = &h.opaque {
        let _ = write!(out, ", opaque=\"{o}\"");
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
        let h = authorization(&ch, &creds(), "INVITE", "sip:+1555@198.18.2.30", "cn").unwrap();
        assert!(h.starts_with("Proxy-Authorization: Digest "), "{h}");
        let md5 = |s: &str| digest_auth::Algorithm::new(AlgorithmType::MD5, false).hash_str(s);
        let ha1 = md5("siplb:trunk.example:trunk-secret");
        let ha2 = md5("INVITE:sip:+1555@198.18.2.30");
        let want = md5(&format!("{ha1}:abc:00000001:cn:auth:{ha2}"));
        assert_eq!(field(&h, "response"), want);
        assert_eq!(field(&h, "opaque"), "op");
        assert_eq!(field(&h, "nc"), "00000001");
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
        let h = authorization(&ch, &creds(), "BYE", "sip:gw", "cn").unwrap();
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
            authorization(&ch, &by_ha1, "INVITE", "sip:x", "c"),
            authorization(&ch, &creds(), "INVITE", "sip:x", "c")
        );
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256",
        );
        let msg = SipMsg::parse(text.as_bytes()).unwrap();
        assert!(
            authorization(&challenge(&msg).unwrap(), &by_ha1, "INVITE", "sip:x", "c").is_none()
        );
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
                let _ = authorization(&ch, &creds(), "INVITE", "sip:x@y", "c1");
            }
        }
        // A UTF-8 realm, before the fix a panic half the time, is passed on.
        let text = reply(
            401,
            "WWW-Authenticate: Digest realm=\"тест\", nonce=\"abc\"",
        );
        assert!(challenge(&SipMsg::parse(text.as_bytes()).unwrap()).is_none());
    }
}
