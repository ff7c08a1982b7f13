//! SMTP replies (RFC 5321 §4.2): a three-digit code, then text, over one or more lines
//! (`250-first`, `250 last`).

/// A complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    /// The text of every line, joined by `\n`.
    pub(crate) text: String,
}

impl Reply {
    /// The extension keywords of an EHLO reply (upper case; the first line is the greeting).
    pub(crate) fn extensions(&self) -> impl Iterator<Item = String> + '_ {
        self.text.lines().skip(1).filter_map(|line| {
            line.split_whitespace()
                .next()
                .map(|word| word.to_ascii_uppercase())
        })
    }
}

/// What one line says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// More lines follow.
    More(u16, &'a str),
    Last(u16, &'a str),
}

/// Parses one reply line (without its end of line).
pub(crate) fn parse_line(line: &[u8]) -> Result<Line<'_>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "a reply line is not UTF-8".to_owned())?;
    let digits = text
        .get(..3)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let Some(code) = digits.and_then(|d| d.parse::<u16>().ok()) else {
        return Err(format!("not a reply line: {:?}", truncate(text)));
    };
    if !(200..600).contains(&code) {
        return Err(format!("reply code out of range: {code}"));
    }
    let rest = &text[3..];
    match rest.as_bytes().first() {
        None => Ok(Line::Last(code, "")),
        Some(b' ') => Ok(Line::Last(code, &rest[1..])),
        Some(b'-') => Ok(Line::More(code, &rest[1..])),
        Some(_) => Err(format!("not a reply line: {:?}", truncate(text))),
    }
}

pub(crate) fn truncate(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_are_parsed_with_their_continuation_mark() {
        let cases: [(&[u8], Result<Line<'_>, ()>); 7] = [
            (
                b"250-mail.test Hello",
                Ok(Line::More(250, "mail.test Hello")),
            ),
            (b"250 STARTTLS", Ok(Line::Last(250, "STARTTLS"))),
            (b"354", Ok(Line::Last(354, ""))),
            (b"451 4.3.0 later", Ok(Line::Last(451, "4.3.0 later"))),
            (b"25", Err(())),
            (b"abc text", Err(())),
            (b"250xSTARTTLS", Err(())),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line).map_err(|_| ()), expected, "{line:?}");
        }
    }

    #[test]
    fn extensions_are_the_first_words_after_the_greeting() {
        let reply = Reply {
            code: 250,
            text: "mail.test\nsize 1000\nSTARTTLS\n8BITMIME".into(),
        };
        let found: Vec<String> = reply.extensions().collect();
        assert_eq!(found, ["SIZE", "STARTTLS", "8BITMIME"]);
    }
}
