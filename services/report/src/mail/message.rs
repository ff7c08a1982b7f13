//! The mail message: RFC 5322 headers, MIME multipart/mixed with a UTF-8 text part and the
//! PDF attached. Everything is 7-bit (quoted-printable, base64, RFC 2047 encoded words), with
//! CRLF line endings, so any SMTP server relays it unchanged.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::french;

/// The file sent with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name shown to the reader ("compte-rendu-TE-2026-000123.pdf").
    pub filename: String,
    /// MIME type, `application/pdf` for the report.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's MSSanté address.
    pub from: String,
    /// The recipients' MSSanté addresses.
    pub to: Vec<String>,
    /// Subject, any Unicode (encoded per RFC 2047).
    pub subject: String,
    /// The text part, any Unicode; lines may end with `\n` or `\r\n`.
    pub text_body: String,
    pub attachment: Attachment,
    /// The right-hand side of the `Message-ID` (the sending domain).
    pub message_id_domain: String,
    /// The `Date` header (written in Paris time).
    pub date: jiff::Timestamp,
}

/// Longest subject accepted, in bytes (it is for a human to read).
const MAX_SUBJECT: usize = 998;
/// Longest attachment file name accepted, in bytes.
const MAX_FILE_NAME: usize = 200;

/// Builds the message.
///
/// The `Message-ID` is derived from the content, so building the same message twice gives the
/// same bytes: a retry of the same report is recognisable as the same message.
///
/// # Errors
/// [`Error::HeaderInjection`] for a line break or control character in a header value,
/// [`Error::InvalidAddress`], [`Error::NoRecipient`], [`Error::TooLong`] for a subject over 998
/// bytes.
pub fn build_message(message: &Message) -> Result<Vec<u8>, Error> {
    check_address("from", &message.from)?;
    if message.to.is_empty() {
        return Err(Error::NoRecipient);
    }
    for to in &message.to {
        check_address("to", to)?;
    }
    check_header("subject", &message.subject)?;
    if message.subject.len() > MAX_SUBJECT {
        return Err(Error::TooLong {
            field: "subject",
            length: message.subject.len(),
            max: MAX_SUBJECT,
        });
    }
    check_header("attachment file name", &message.attachment.filename)?;
    // Percent-encoded, a name of 200 bytes stays well within a header line's 998 characters.
    if message.attachment.filename.len() > MAX_FILE_NAME {
        return Err(Error::TooLong {
            field: "attachment file name",
            length: message.attachment.filename.len(),
            max: MAX_FILE_NAME,
        });
    }
    check_content_type(&message.attachment.content_type)?;
    check_domain(&message.message_id_domain)?;

    let digest = {
        let mut hash = Sha256::new();
        for part in [
            message.from.as_bytes(),
            message.to.join(",").as_bytes(),
            message.subject.as_bytes(),
            message.date.to_string().as_bytes(),
            message.text_body.as_bytes(),
            message.attachment.filename.as_bytes(),
            &message.attachment.bytes,
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hex::encode(hash.finalize())
    };
    // "=_" cannot occur in quoted-printable nor base64 text, so the boundary is never in a part.
    let boundary = format!("=_telehealth_{}", &digest[..24]);
    // RFC 5322 dates start in 1900; a timestamp before that is a caller's bug.
    let date = jiff::fmt::rfc2822::to_string(&message.date.to_zoned_datetime(french::paris()))
        .map_err(|_| Error::InvalidDate)?;

    let mut out = String::new();
    let mut header = |name: &str, value: &str| {
        let _ = write!(out, "{name}: {value}\r\n");
    };
    header("Date", &date);
    header("From", &format!("<{}>", message.from));
    header("To", &fold_list(&message.to));
    header("Subject", &encode_words(&message.subject));
    header(
        "Message-ID",
        &format!("<{}@{}>", &digest[..32], message.message_id_domain),
    );
    header("MIME-Version", "1.0");
    header(
        "Content-Type",
        &format!("multipart/mixed;\r\n boundary=\"{boundary}\""),
    );
    out.push_str("\r\nThis is a MIME message.\r\n");

    let _ = write!(
        out,
        "\r\n--{boundary}\r\nContent-Type: text/plain; charset=UTF-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{}\r\n",
        quoted_printable(&message.text_body)
    );

    let attachment = &message.attachment;
    let (name_param, filename_param) = file_name_params(&attachment.filename);
    let _ = write!(
        out,
        "\r\n--{boundary}\r\nContent-Type: {};\r\n {name_param}\r\n\
         Content-Disposition: attachment;\r\n {filename_param}\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
        attachment.content_type
    );
    let encoded = STANDARD.encode(&attachment.bytes);
    for chunk in encoded.as_bytes().chunks(76) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    let _ = write!(out, "\r\n--{boundary}--\r\n");
    Ok(out.into_bytes())
}

/// A mail address as MSSanté uses them: `local@domain`, printable ASCII, none of the characters
/// that would change the meaning of a header or an SMTP command.
pub(crate) fn check_address(field: &'static str, address: &str) -> Result<(), Error> {
    if address.chars().any(char::is_control) {
        return Err(Error::HeaderInjection { field });
    }
    let invalid = || Error::InvalidAddress {
        field,
        address: address.chars().take(120).collect(),
    };
    let (local, domain) = address.rsplit_once('@').ok_or_else(invalid)?;
    let allowed = |c: char| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c);
    if local.is_empty()
        || domain.is_empty()
        || address.len() > 254
        || !local.chars().all(allowed)
        || check_domain(domain).is_err()
    {
        return Err(invalid());
    }
    Ok(())
}

fn check_header(field: &'static str, value: &str) -> Result<(), Error> {
    // Tabs are harmless folding whitespace; every other control character could end the line.
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Error::HeaderInjection { field });
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), Error> {
    check_header("domain", domain)?;
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidAddress {
            field: "domain",
            address: domain.chars().take(120).collect(),
        })
    }
}

fn check_content_type(value: &str) -> Result<(), Error> {
    check_header("content type", value)?;
    let token = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    match value.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => Ok(()),
        _ => Err(Error::HeaderInjection {
            field: "content type",
        }),
    }
}

/// `<a@x>, <b@y>` folded one address per line.
fn fold_list(addresses: &[String]) -> String {
    addresses
        .iter()
        .map(|a| format!("<{a}>"))
        .collect::<Vec<_>>()
        .join(",\r\n ")
}

/// The subject as is when it is short printable ASCII, else as RFC 2047 `B` encoded words of
/// at most 75 characters, each holding whole UTF-8 characters, one per folded line.
fn encode_words(text: &str) -> String {
    let plain = text.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        && !text.contains("=?")
        && text.len() <= 900;
    if plain {
        return text.to_owned();
    }
    // 36 bytes of text are 48 base64 characters: 60 with the markers, so that even the first
    // line, after "Subject: ", stays under the 76 characters RFC 2047 asks for.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 36 {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// `name="…"` and `filename="…"` for a plain ASCII name, else the RFC 2231 form
/// (`filename*=UTF-8''%C3%A9…`) that mail readers decode.
fn file_name_params(name: &str) -> (String, String) {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_. ()".contains(c));
    if plain {
        return (format!("name=\"{name}\""), format!("filename=\"{name}\""));
    }
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    (
        format!("name*=UTF-8''{encoded}"),
        format!("filename*=UTF-8''{encoded}"),
    )
}

/// Quoted-printable (RFC 2045 §6.7) of UTF-8 text, lines of at most 76 characters, CRLF.
fn quoted_printable(text: &str) -> String {
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len() * 11 / 10);
    for (number, line) in normalised.split('\n').enumerate() {
        if number > 0 {
            out.push_str("\r\n");
        }
        let bytes = line.as_bytes();
        let mut width = 0;
        for (index, &byte) in bytes.iter().enumerate() {
            let last = index + 1 == bytes.len();
            let literal = match byte {
                b'=' => false,
                // Trailing white space would be stripped in transit.
                b' ' | b'\t' => !last,
                33..=126 => true,
                _ => false,
            };
            let token_width = if literal { 1 } else { 3 };
            if width + token_width > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            if literal {
                out.push(char::from(byte));
            } else {
                let _ = write!(out, "={byte:02X}");
            }
            width += token_width;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            from: "teleexpertise@centre-sante.mssante.fr".into(),
            to: vec!["francois.menard@chu-rouen.mssante.fr".into()],
            subject: "Compte rendu de télé-expertise — Mme DUPRÉ".into(),
            text_body: "Bonjour,\nVeuillez trouver ci-joint le compte rendu.\n.\nCordialement"
                .into(),
            attachment: Attachment {
                filename: "compte-rendu.pdf".into(),
                content_type: "application/pdf".into(),
                bytes: (0..=255u8).cycle().take(1000).collect(),
            },
            message_id_domain: "centre-sante.mssante.fr".into(),
            date: "2026-12-03T13:05:00Z".parse().expect("instant"),
        }
    }

    fn text(message: &Message) -> String {
        String::from_utf8(build_message(message).expect("a message")).expect("7-bit")
    }

    #[test]
    fn the_message_is_seven_bit_with_crlf_lines_of_at_most_78_characters() {
        let bytes = build_message(&sample()).expect("a message");
        assert!(bytes.is_ascii());
        let text = String::from_utf8(bytes).expect("ASCII");
        assert!(!text.replace("\r\n", "").contains('\n'), "no bare LF");
        assert!(!text.replace("\r\n", "").contains('\r'), "no bare CR");
        for line in text.split("\r\n") {
            assert!(line.len() <= 78, "{line:?}");
        }
    }

    #[test]
    fn headers_say_who_when_and_what() {
        let text = text(&sample());
        assert!(
            text.contains("Date: Thu, 3 Dec 2026 14:05:00 +0100\r\n"),
            "{text}"
        );
        assert!(text.contains("From: <teleexpertise@centre-sante.mssante.fr>\r\n"));
        assert!(text.contains("To: <francois.menard@chu-rouen.mssante.fr>\r\n"));
        assert!(text.contains("Subject: =?UTF-8?B?"));
        assert!(text.contains("@centre-sante.mssante.fr>\r\n"), "Message-ID");
        assert!(text.contains("Content-Type: multipart/mixed;\r\n boundary=\"=_telehealth_"));
        assert!(
            text.contains("Content-Disposition: attachment;\r\n filename=\"compte-rendu.pdf\"")
        );
    }

    #[test]
    fn the_subject_is_encoded_in_whole_characters() {
        let subject = "é".repeat(60);
        let encoded = encode_words(&subject);
        let mut decoded = Vec::new();
        for word in encoded.split("\r\n ") {
            assert!(word.len() <= 60, "{word}");
            let inner = word
                .strip_prefix("=?UTF-8?B?")
                .and_then(|w| w.strip_suffix("?="))
                .expect("an encoded word");
            let bytes = STANDARD.decode(inner).expect("base64");
            assert!(
                std::str::from_utf8(&bytes).is_ok(),
                "whole characters per word"
            );
            decoded.extend(bytes);
        }
        assert_eq!(String::from_utf8(decoded).expect("UTF-8"), subject);
        assert_eq!(encode_words("Plain subject"), "Plain subject");
    }

    #[test]
    fn quoted_printable_escapes_what_must_be() {
        assert_eq!(quoted_printable("é = ok "), "=C3=A9 =3D ok=20");
        assert_eq!(quoted_printable("a\nb\r\nc"), "a\r\nb\r\nc");
        let long = quoted_printable(&"é".repeat(100));
        for line in long.split("\r\n") {
            assert!(line.len() <= 76, "{line}");
        }
    }

    #[test]
    fn the_attachment_is_base64_in_76_column_lines() {
        let text = text(&sample());
        let body = text
            .split("Content-Transfer-Encoding: base64\r\n\r\n")
            .nth(1)
            .expect("the attachment part");
        let lines: Vec<&str> = body.split("\r\n").take_while(|l| !l.is_empty()).collect();
        assert!(lines[..lines.len() - 1].iter().all(|l| l.len() == 76));
        let decoded = STANDARD.decode(lines.concat()).expect("base64");
        assert_eq!(decoded, sample().attachment.bytes);
    }

    #[test]
    fn header_injection_is_refused() {
        type Spoil = fn(&mut Message);
        let cases: [(&str, Spoil); 6] = [
            ("subject", |m| {
                m.subject = "Hello\r\nBcc: spy@evil.example".into()
            }),
            ("to", |m| {
                m.to = vec!["a@b.fr\r\nBcc: spy@evil.example".into()]
            }),
            ("from", |m| m.from = "a@b.fr\nX: y".into()),
            ("attachment file name", |m| {
                m.attachment.filename = "a\r\n.pdf".into()
            }),
            ("content type", |m| {
                m.attachment.content_type = "application/pdf\r\nX: y".into()
            }),
            ("domain", |m| m.message_id_domain = "x.fr\r\n".into()),
        ];
        for (field, spoil) in cases {
            let mut message = sample();
            spoil(&mut message);
            assert_eq!(
                build_message(&message),
                Err(Error::HeaderInjection { field }),
                "{field}"
            );
        }
    }

    #[test]
    fn malformed_addresses_and_no_recipient_are_refused() {
        for address in [
            "", "no-at", "@x.fr", "a@", "a b@x.fr", "<a@x.fr>", "a@x..fr", "é@x.fr",
        ] {
            let mut message = sample();
            message.to = vec![address.into()];
            assert!(
                matches!(build_message(&message), Err(Error::InvalidAddress { .. })),
                "{address:?}"
            );
        }
        let mut message = sample();
        message.to.clear();
        assert_eq!(build_message(&message), Err(Error::NoRecipient));
    }

    #[test]
    fn a_non_ascii_file_name_uses_rfc_2231() {
        let (name, filename) = file_name_params("compte rendu é.pdf");
        assert_eq!(name, "name*=UTF-8''compte%20rendu%20%C3%A9.pdf");
        assert_eq!(filename, "filename*=UTF-8''compte%20rendu%20%C3%A9.pdf");
    }

    #[test]
    fn the_same_message_gives_the_same_bytes() {
        assert_eq!(build_message(&sample()), build_message(&sample()));
    }
}
