//! Checks of what participants send each other: SDP (parsed with webrtc-rs's `sdp` crate) and
//! trickled ICE candidates (RFC 8839 grammar). Nothing that fails here is relayed.

use std::io::Cursor;

use crate::domain::{
    MAX_CANDIDATE_BYTES, MAX_MID_CHARS, MAX_UFRAG_CHARS, MessageError, MessageErrorCode as Code,
};

/// Which JSEP type an SDP is declared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpType {
    Offer,
    Answer,
}

/// Checks an SDP offer or answer: size, syntax, at least one media section, ICE credentials,
/// and the DTLS role its type allows (an answer may not say `a=setup:actpass`, RFC 5763 §5).
pub fn sdp(kind: SdpType, text: &str, max_bytes: usize) -> Result<(), MessageError> {
    if text.is_empty() {
        return Err(MessageError::new(Code::InvalidMessage, "sdp is required"));
    }
    if text.len() > max_bytes {
        return Err(MessageError::new(
            Code::MessageTooLarge,
            format!(
                "the SDP is {} bytes; at most {max_bytes} are accepted",
                text.len()
            ),
        ));
    }
    let malformed = |why: String| MessageError::new(Code::MalformedSdp, why);
    // The parser is a third-party lexer fed untrusted text: a panic inside it must refuse the
    // message, not kill the stream.
    let parsed = std::panic::catch_unwind(|| {
        sdp::SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
    })
    .map_err(|_| malformed("the SDP does not parse".into()))?
    .map_err(|e| malformed(format!("the SDP does not parse: {e}")))?;
    if parsed.media_descriptions.is_empty() {
        return Err(malformed("the SDP has no media section (m=)".into()));
    }
    let session_ice = parsed.has_attribute("ice-ufrag") && parsed.has_attribute("ice-pwd");
    if !session_ice
        && !parsed
            .media_descriptions
            .iter()
            .all(|m| m.has_attribute("ice-ufrag") && m.has_attribute("ice-pwd"))
    {
        return Err(malformed(
            "the SDP lacks ICE credentials (a=ice-ufrag and a=ice-pwd)".into(),
        ));
    }
    let setups = parsed
        .attributes
        .iter()
        .chain(parsed.media_descriptions.iter().flat_map(|m| &m.attributes))
        .filter(|a| a.key == "setup")
        .map(|a| a.value.as_deref().unwrap_or(""));
    for setup in setups {
        let allowed: &[&str] = match kind {
            SdpType::Offer => &["actpass", "active", "passive"],
            SdpType::Answer => &["active", "passive"],
        };
        if !allowed.contains(&setup) {
            let what = match kind {
                SdpType::Offer => "an offer",
                SdpType::Answer => "an answer",
            };
            return Err(malformed(format!(
                "a=setup:{setup} is not valid in {what}; is this SDP of the declared type?"
            )));
        }
    }
    Ok(())
}

/// Checks a trickled candidate and its m-line reference.
///
/// `candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
/// [raddr <address>] [rport <port>] *(<extension name> <value>)`.
pub fn candidate(candidate: &str, sdp_mid: &str, ufrag: &str) -> Result<(), MessageError> {
    let malformed = |why: &str| MessageError::new(Code::MalformedCandidate, why.to_owned());
    if candidate.is_empty() {
        return Err(MessageError::new(
            Code::InvalidMessage,
            "candidate is required (send end_of_candidates to end the generation)",
        ));
    }
    if candidate.len() > MAX_CANDIDATE_BYTES {
        return Err(MessageError::new(
            Code::MessageTooLarge,
            format!("a candidate is at most {MAX_CANDIDATE_BYTES} bytes"),
        ));
    }
    if sdp_mid.chars().count() > MAX_MID_CHARS || ufrag.chars().count() > MAX_UFRAG_CHARS {
        return Err(MessageError::new(
            Code::MessageTooLarge,
            format!(
                "sdp_mid is at most {MAX_MID_CHARS} and username_fragment {MAX_UFRAG_CHARS} characters"
            ),
        ));
    }
    let body = candidate
        .strip_prefix("candidate:")
        .ok_or_else(|| malformed("a candidate starts with `candidate:`"))?;
    let fields: Vec<&str> = body.split(' ').collect();
    if fields.len() < 8 {
        return Err(malformed(
            "a candidate has a foundation, component, transport, priority, address, port and `typ <type>`",
        ));
    }
    let ice_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if fields[0].is_empty() || fields[0].len() > 32 || !fields[0].chars().all(ice_char) {
        return Err(malformed("the foundation is 1 to 32 ICE characters"));
    }
    if !digits(fields[1], 3) {
        return Err(malformed("the component id is 1 to 3 digits"));
    }
    if !is_token(fields[2]) {
        return Err(malformed("the transport is a token such as UDP or TCP"));
    }
    if !digits(fields[3], 10)
        || fields[3]
            .parse::<u64>()
            .map_or(true, |p| p > u64::from(u32::MAX))
    {
        return Err(malformed("the priority is a number up to 4294967295"));
    }
    if !is_address(fields[4]) {
        return Err(malformed(
            "the connection address is an IP address or a host name",
        ));
    }
    if !is_port(fields[5]) {
        return Err(malformed("the port is a number up to 65535"));
    }
    if fields[6] != "typ" || !is_token(fields[7]) {
        return Err(malformed("`typ <type>` follows the port"));
    }
    let mut rest = &fields[8..];
    while !rest.is_empty() {
        let [name, value, tail @ ..] = rest else {
            return Err(malformed(
                "extension attributes come as name and value pairs",
            ));
        };
        let ok = match *name {
            "raddr" => is_address(value),
            "rport" => is_port(value),
            other => is_token(other) && !value.is_empty() && !value.chars().any(char::is_control),
        };
        if !ok {
            return Err(malformed(
                "a related address, port or extension is malformed",
            ));
        }
        rest = tail;
    }
    Ok(())
}

fn digits(value: &str, max: usize) -> bool {
    !value.is_empty() && value.len() <= max && value.bytes().all(|b| b.is_ascii_digit())
}

fn is_port(value: &str) -> bool {
    digits(value, 5) && value.parse::<u32>().is_ok_and(|p| p <= 65_535)
}

/// RFC 8839 `token` characters (RFC 3261).
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
}

/// An IPv4/IPv6 address or a host name (mDNS `.local` names included).
fn is_address(value: &str) -> bool {
    if value.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offer as webrtc-rs writes it (one data channel).
    pub const OFFER: &str = "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:EsAwLgXjQrUaRnRa\r\na=ice-pwd:bPHsiNMPrMMPyYHwJZtmqdYDejBJmfGG\r\n\
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5A\r\n\
a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";

    #[test]
    fn a_webrtc_offer_passes_and_the_same_text_is_not_an_answer() {
        assert_eq!(sdp(SdpType::Offer, OFFER, 65_536), Ok(()));
        let error = sdp(SdpType::Answer, OFFER, 65_536).expect_err("actpass in an answer");
        assert_eq!(error.code, Code::MalformedSdp);
        let answer = OFFER.replace("a=setup:actpass", "a=setup:active");
        assert_eq!(sdp(SdpType::Answer, &answer, 65_536), Ok(()));
    }

    #[test]
    fn broken_or_oversized_sdp_is_refused_with_its_code() {
        let no_ice = OFFER
            .replace("a=ice-ufrag:EsAwLgXjQrUaRnRa\r\n", "")
            .replace("a=ice-pwd:bPHsiNMPrMMPyYHwJZtmqdYDejBJmfGG\r\n", "");
        let no_media = OFFER.split("m=application").next().unwrap_or("").to_owned();
        let huge = format!("{OFFER}{}", "a=x-pad:0123456789\r\n".repeat(4_000));
        let cases: Vec<(&str, String, Code)> = vec![
            ("empty", String::new(), Code::InvalidMessage),
            ("not SDP", "hello world".into(), Code::MalformedSdp),
            ("garbage line", "v=0\r\nzzz\r\n".into(), Code::MalformedSdp),
            ("no ICE credentials", no_ice, Code::MalformedSdp),
            ("no media", no_media, Code::MalformedSdp),
            ("too large", huge, Code::MessageTooLarge),
        ];
        for (case, text, code) in cases {
            let error = sdp(SdpType::Offer, &text, 65_536).expect_err(case);
            assert_eq!(error.code, code, "{case}: {}", error.message);
        }
    }

    #[test]
    fn candidates_follow_the_rfc_8839_grammar() {
        let good = [
            "candidate:1966762134 1 udp 2130706431 127.0.0.1 52345 typ host",
            "candidate:842163049 1 UDP 1677729535 203.0.113.7 61002 typ srflx raddr 192.0.2.2 rport 61002 generation 0",
            "candidate:3 1 tcp 1518280447 ::1 9 typ host tcptype active",
            "candidate:a+b/c 1 udp 2122260223 1c2a4a7e-3b7b-4a57-9a31-2b9f3f0e0c1d.local 50000 typ host",
        ];
        for text in good {
            assert_eq!(candidate(text, "0", ""), Ok(()), "{text}");
        }
        let bad = [
            ("", Code::InvalidMessage),
            (
                "a=candidate:1 1 udp 1 127.0.0.1 1 typ host",
                Code::MalformedCandidate,
            ),
            (
                "candidate:1 1 udp 1 127.0.0.1 1 host",
                Code::MalformedCandidate,
            ),
            (
                "candidate:1 1 udp 99999999999 127.0.0.1 1 typ host",
                Code::MalformedCandidate,
            ),
            (
                "candidate:1 1 udp 1 127.0.0.1 70000 typ host",
                Code::MalformedCandidate,
            ),
            (
                "candidate:1 1 udp 1 bad_host! 1 typ host",
                Code::MalformedCandidate,
            ),
            (
                "candidate:1 1 udp 1 127.0.0.1 1 typ host raddr",
                Code::MalformedCandidate,
            ),
        ];
        for (text, code) in bad {
            let error = candidate(text, "0", "").expect_err(text);
            assert_eq!(error.code, code, "{text}: {}", error.message);
        }
        let long = format!(
            "candidate:1 1 udp 1 127.0.0.1 1 typ host {}",
            "x y ".repeat(300)
        );
        assert_eq!(
            candidate(&long, "0", "").map_err(|e| e.code),
            Err(Code::MessageTooLarge)
        );
    }
}
