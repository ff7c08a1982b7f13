//! iCalendar (RFC 5545) export of a practitioner's appointments (docs/decisions.md, "Scheduling").
//!
//! [`export`] turns a list of [`CalendarEvent`]s into one `VCALENDAR` document that common
//! calendar apps import or subscribe to (`METHOD:PUBLISH`).
//!
//! Times are written as local times with a `TZID` (`DTSTART;TZID=Europe/Paris:20260330T090000`)
//! rather than in UTC, so that an app shows the appointment at the practitioner's local time and
//! keeps it there. The file also carries a `VTIMEZONE` for that zone, derived from jiff's time
//! zone database: one `STANDARD` or `DAYLIGHT` observance per offset change, from the change in
//! force a year before the first event to a year after the last one. An app that does not know
//! the zone by its name (or knows an outdated version of it) still computes the right instants.
//! A local time that occurs twice (the hour repeated when the clocks go back) is written in UTC
//! instead: RFC 5545 reads it as the first pass, so the second pass has no `TZID` form, and
//! parsers disagree on the first one (ical.js 2.2.1, for one, reads the second pass).
//!
//! Output: CRLF line endings, lines folded at 75 octets without splitting a UTF-8 sequence, text
//! values escaped (`\\`, `\;`, `\,`, `\n`), control characters dropped. Instants are written to
//! the second (sub-second parts are truncated).
//!
//! This module is pure (std + jiff, no I/O). Which appointments are exported, and what their
//! summary and description reveal about the patient, is the caller's concern: whatever is put in
//! a [`CalendarEvent`] ends up in a file that leaves the suite.

use jiff::{
    SignedDuration, Timestamp,
    civil::DateTime,
    tz::{Offset, TimeZone},
};

/// Written in `PRODID`.
const PRODID: &str = "-//telehealth//scheduling//EN";
/// Maximum length of a content line, in octets, excluding the CRLF (RFC 5545 §3.1).
const MAX_LINE_OCTETS: usize = 75;
/// How far before the first event and after the last one the `VTIMEZONE` describes the zone.
const ZONE_MARGIN: SignedDuration = SignedDuration::from_hours(366 * 24);

/// One appointment as a calendar event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalendarEvent {
    /// The appointment id, written as the event's `UID` as it is (the contract: "UID =
    /// appointment id"): a UUID is already globally unique (RFC 5545 §3.8.4.7 only recommends
    /// the `@domain` form), and a client can match an event to its appointment without parsing.
    /// Stable across reschedules.
    pub uid: String,
    /// When the appointment starts.
    pub start: jiff::Timestamp,
    /// When it ends; an end not after the start is omitted (the event then lasts no time).
    pub end: jiff::Timestamp,
    /// `SUMMARY`, e.g. "Téléconsultation"; any text (escaped on output).
    pub summary: String,
    /// `DESCRIPTION`, omitted when `None`.
    pub description: Option<String>,
    /// `STATUS:CANCELLED` instead of `STATUS:CONFIRMED`.
    pub cancelled: bool,
    /// `SEQUENCE`: how many times the appointment was rescheduled, so apps replace older copies.
    pub sequence: u32,
    /// `LAST-MODIFIED`.
    pub last_modified: jiff::Timestamp,
}

/// Renders `events` as an RFC 5545 `VCALENDAR` in the time zone `zone`, named `zone_name`.
///
/// The calendar has `PRODID`, `VERSION:2.0`, `CALSCALE:GREGORIAN`, `METHOD:PUBLISH`,
/// `X-WR-CALNAME` (`calendar_name`) and `X-WR-TIMEZONE`, one `VTIMEZONE` for `zone` and one
/// `VEVENT` per event, in the order given. `zone_name` is the `TZID`, normally the zone's IANA
/// name (`Europe/Paris`); when it is empty the zone's own IANA name is used (`Unnamed` for a
/// zone without one). `now` is the `DTSTAMP` of every event.
pub fn export(
    calendar_name: &str,
    zone_name: &str,
    zone: &TimeZone,
    events: &[CalendarEvent],
    now: jiff::Timestamp,
) -> String {
    let tzid = tzid(zone_name, zone);
    let mut out = Lines::default();
    out.push("BEGIN:VCALENDAR");
    out.push(&format!("PRODID:{PRODID}"));
    out.push("VERSION:2.0");
    out.push("CALSCALE:GREGORIAN");
    out.push("METHOD:PUBLISH");
    out.push(&format!("X-WR-CALNAME:{}", escape_text(calendar_name)));
    out.push(&format!("X-WR-TIMEZONE:{}", escape_text(&tzid)));
    write_vtimezone(&mut out, &tzid, zone, events, now);
    let dtstamp = utc_value(now);
    for event in events {
        write_vevent(&mut out, &tzid, zone, event, &dtstamp);
    }
    out.push("END:VCALENDAR");
    out.text
}

fn write_vevent(
    out: &mut Lines,
    tzid: &str,
    zone: &TimeZone,
    event: &CalendarEvent,
    dtstamp: &str,
) {
    let start = floor_to_second(event.start);
    let end = floor_to_second(event.end);
    out.push("BEGIN:VEVENT");
    out.push(&format!("UID:{}", escape_text(&event.uid)));
    out.push(&format!("DTSTAMP:{dtstamp}"));
    out.push(&format!("DTSTART{}", zoned_value(tzid, zone, start)));
    if end > start {
        out.push(&format!("DTEND{}", zoned_value(tzid, zone, end)));
    }
    out.push(&format!("SUMMARY:{}", escape_text(&event.summary)));
    if let Some(description) = &event.description {
        out.push(&format!("DESCRIPTION:{}", escape_text(description)));
    }
    let status = if event.cancelled {
        "CANCELLED"
    } else {
        "CONFIRMED"
    };
    out.push(&format!("STATUS:{status}"));
    out.push(&format!("SEQUENCE:{}", event.sequence));
    out.push(&format!("LAST-MODIFIED:{}", utc_value(event.last_modified)));
    out.push("END:VEVENT");
}

/// One `STANDARD` or `DAYLIGHT` sub-component of the `VTIMEZONE`.
struct Observance {
    daylight: bool,
    /// Local time of the onset, in the offset before it (`TZOFFSETFROM`), as RFC 5545 wants.
    onset: DateTime,
    from: Offset,
    to: Offset,
    name: String,
}

fn write_vtimezone(
    out: &mut Lines,
    tzid: &str,
    zone: &TimeZone,
    events: &[CalendarEvent],
    now: Timestamp,
) {
    let (first, last) = events
        .iter()
        .flat_map(|event| [event.start, event.end])
        .fold(
            (None, None),
            |(lo, hi): (Option<Timestamp>, Option<Timestamp>), t| {
                (
                    Some(lo.map_or(t, |lo| lo.min(t))),
                    Some(hi.map_or(t, |hi| hi.max(t))),
                )
            },
        );
    let from = first
        .unwrap_or(now)
        .saturating_sub(ZONE_MARGIN)
        .unwrap_or(Timestamp::MIN);
    let until = last
        .unwrap_or(now)
        .saturating_add(ZONE_MARGIN)
        .unwrap_or(Timestamp::MAX);

    out.push("BEGIN:VTIMEZONE");
    out.push(&format!("TZID:{}", escape_text(tzid)));
    for observance in observances(zone, from, until) {
        let kind = if observance.daylight {
            "DAYLIGHT"
        } else {
            "STANDARD"
        };
        out.push(&format!("BEGIN:{kind}"));
        out.push(&format!("DTSTART:{}", local_value(observance.onset)));
        out.push(&format!("TZOFFSETFROM:{}", offset_value(observance.from)));
        out.push(&format!("TZOFFSETTO:{}", offset_value(observance.to)));
        if !observance.name.is_empty() {
            out.push(&format!("TZNAME:{}", escape_text(&observance.name)));
        }
        out.push(&format!("END:{kind}"));
    }
    out.push("END:VTIMEZONE");
}

/// The observances that describe `zone` over `[from, until]`: the offset change in force at
/// `from`, then every change up to `until`. A zone that never changed offset gets one
/// `STANDARD` observance (from 1970, or from `from` if that is earlier).
fn observances(zone: &TimeZone, from: Timestamp, until: Timestamp) -> Vec<Observance> {
    let mut result = Vec::new();
    // `preceding` is strictly before its argument: step one nanosecond on to include `from`.
    let in_force = zone
        .preceding(
            from.saturating_add(SignedDuration::from_nanos(1))
                .unwrap_or(from),
        )
        .next();
    let mut cursor = from;
    match &in_force {
        Some(transition) => {
            cursor = transition.timestamp();
            result.push(observance(zone, transition));
        }
        None => {
            let info = zone.to_offset_info(from);
            let epoch = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);
            result.push(Observance {
                daylight: info.dst().is_dst(),
                onset: info.offset().to_datetime(from).min(epoch),
                from: info.offset(),
                to: info.offset(),
                name: info.abbreviation().to_string(),
            });
        }
    }
    for transition in zone.following(cursor) {
        if transition.timestamp() > until {
            break;
        }
        result.push(observance(zone, &transition));
    }
    result
}

fn observance(zone: &TimeZone, transition: &jiff::tz::TimeZoneTransition<'_>) -> Observance {
    let at = transition.timestamp();
    let to = transition.offset();
    let from = at
        .checked_sub(SignedDuration::from_nanos(1))
        .map_or(to, |before| zone.to_offset(before));
    Observance {
        daylight: transition.dst().is_dst(),
        onset: from.to_datetime(at),
        from,
        to,
        name: transition.abbreviation().to_string(),
    }
}

/// `;TZID=<zone>:<local time>`, or `:<UTC time>Z` when the local time occurs twice (RFC 5545
/// §3.3.5 reads it as the first pass, some parsers as the second: UTC leaves no doubt).
fn zoned_value(tzid: &str, zone: &TimeZone, at: Timestamp) -> String {
    let local = zone.to_datetime(at);
    match zone.to_ambiguous_timestamp(local).unambiguous() {
        Ok(read_back) if read_back == at => {
            format!(";TZID={}:{}", param_value(tzid), local_value(local))
        }
        _ => format!(":{}", utc_value(at)),
    }
}

/// A DATE-TIME in UTC form: `20260330T070000Z`.
fn utc_value(at: Timestamp) -> String {
    format!("{}Z", local_value(Offset::UTC.to_datetime(at)))
}

/// A DATE-TIME in local form, to the second: `20260330T090000`.
fn local_value(dt: DateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// A UTC-OFFSET: `+0100`, `-0800`, `+0530`, with seconds only when there are some (LMT).
fn offset_value(offset: Offset) -> String {
    let total = offset.seconds();
    let sign = if total < 0 { '-' } else { '+' };
    let total = total.unsigned_abs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    if seconds == 0 {
        format!("{sign}{hours:02}{minutes:02}")
    } else {
        format!("{sign}{hours:02}{minutes:02}{seconds:02}")
    }
}

/// The instant truncated to the whole second at or before it.
fn floor_to_second(at: Timestamp) -> Timestamp {
    let second = at.as_second() - i64::from(at.subsec_nanosecond() < 0);
    Timestamp::from_second(second).unwrap_or(at)
}

/// The `TZID`: `zone_name` without the characters a parameter value cannot hold (`"` and
/// controls), or the zone's IANA name when that leaves nothing, or `Unnamed` (a name no app
/// knows, so that it reads the `VTIMEZONE`) for a zone without one.
fn tzid(zone_name: &str, zone: &TimeZone) -> String {
    let clean = |name: &str| -> String {
        name.chars()
            .filter(|c| *c != '"' && !c.is_control())
            .collect()
    };
    let name = clean(zone_name);
    if !name.is_empty() {
        return name;
    }
    zone.iana_name()
        .map(clean)
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "Unnamed".to_string())
}

/// A parameter value (RFC 5545 §3.2), quoted when it holds `;`, `:` or `,`.
fn param_value(value: &str) -> String {
    if value.contains([';', ':', ',']) {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

/// A TEXT value (RFC 5545 §3.3.11): `\` `;` `,` escaped, line breaks (CRLF, CR, LF) as `\n`,
/// other control characters except tab dropped.
fn escape_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            ';' => escaped.push_str("\\;"),
            ',' => escaped.push_str("\\,"),
            '\n' => escaped.push_str("\\n"),
            '\r' => {
                chars.next_if_eq(&'\n');
                escaped.push_str("\\n");
            }
            '\t' => escaped.push('\t'),
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

/// The document being written: content lines folded at 75 octets, each ended by CRLF.
#[derive(Default)]
struct Lines {
    text: String,
}

impl Lines {
    /// Appends one content line, folded (RFC 5545 §3.1): a line longer than 75 octets goes on
    /// after CRLF + one space, which counts in the next line's 75; a UTF-8 sequence is never
    /// split.
    fn push(&mut self, line: &str) {
        let mut used = 0;
        for c in line.chars() {
            let width = c.len_utf8();
            if used + width > MAX_LINE_OCTETS {
                self.text.push_str("\r\n ");
                used = 1;
            }
            self.text.push(c);
            used += width;
        }
        self.text.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap_or_else(|e| panic!("{name} is in jiff's bundled tzdb: {e}"))
    }

    /// The instant of a local wall-clock time in `zone_name` (RFC 5545 rules: an earlier
    /// offset for a repeated time, the offset before a gap).
    fn local(zone_name: &str, text: &str) -> Timestamp {
        let dt: civil::DateTime = text
            .parse()
            .unwrap_or_else(|e| panic!("{text} is a civil datetime: {e}"));
        zone(zone_name)
            .to_ambiguous_timestamp(dt)
            .compatible()
            .unwrap_or_else(|e| panic!("{text} exists in {zone_name}: {e}"))
    }

    fn utc(text: &str) -> Timestamp {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} is a timestamp: {e}"))
    }

    fn event(uid: &str, start: Timestamp, minutes: i64) -> CalendarEvent {
        CalendarEvent {
            uid: uid.to_string(),
            start,
            end: start
                .checked_add(SignedDuration::from_mins(minutes))
                .unwrap_or(start),
            summary: "Téléconsultation".to_string(),
            description: None,
            cancelled: false,
            sequence: 0,
            last_modified: utc("2026-01-05T10:00:00Z"),
        }
    }

    fn now() -> Timestamp {
        utc("2026-02-01T12:00:00Z")
    }

    /// RFC 5545 §3.1 unfolding: a CRLF followed by one space or tab is removed.
    fn unfold(ics: &str) -> Vec<String> {
        ics.replace("\r\n ", "")
            .replace("\r\n\t", "")
            .split("\r\n")
            .map(str::to_string)
            .collect()
    }

    /// The unfolded lines of the VEVENT whose UID is `uid`.
    fn vevent(ics: &str, uid: &str) -> Vec<String> {
        let lines = unfold(ics);
        let wanted = format!("UID:{uid}");
        let blocks = lines.split(|l| l == "END:VEVENT");
        for block in blocks {
            if block.contains(&wanted) {
                let begin = block.iter().rposition(|l| l == "BEGIN:VEVENT").unwrap_or(0);
                return block[begin..].to_vec();
            }
        }
        panic!("no VEVENT with {wanted} in\n{ics}")
    }

    fn property<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
        lines.iter().find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with([':', ';']))
        })
    }

    /// The VTIMEZONE's observances as (kind, DTSTART, TZOFFSETFROM, TZOFFSETTO).
    fn observance_lines(ics: &str) -> Vec<(String, String, String, String)> {
        let mut result = Vec::new();
        let mut current: Option<(String, String, String, String)> = None;
        for line in unfold(ics) {
            match line.as_str() {
                "BEGIN:STANDARD" | "BEGIN:DAYLIGHT" => {
                    current = Some((line[6..].to_string(), "".into(), "".into(), "".into()));
                }
                "END:STANDARD" | "END:DAYLIGHT" => result.extend(current.take()),
                _ => {
                    if let Some(obs) = current.as_mut() {
                        if let Some(v) = line.strip_prefix("DTSTART:") {
                            obs.1 = v.to_string();
                        } else if let Some(v) = line.strip_prefix("TZOFFSETFROM:") {
                            obs.2 = v.to_string();
                        } else if let Some(v) = line.strip_prefix("TZOFFSETTO:") {
                            obs.3 = v.to_string();
                        }
                    }
                }
            }
        }
        result
    }

    /// Resolves `DTSTART`/`DTEND` of an unfolded VEVENT with the file's own VTIMEZONE only (the
    /// latest observance whose onset is not after the local time), as an app that does not know
    /// the zone would. Test-side reading of the file's data, independent of jiff's tz database.
    fn resolve_with_vtimezone(ics: &str, value: &str) -> Timestamp {
        if let Some(utc_text) = value.strip_prefix(':') {
            let dt: civil::DateTime = civil::DateTime::strptime("%Y%m%dT%H%M%SZ", utc_text)
                .unwrap_or_else(|e| panic!("{utc_text} is a UTC DATE-TIME: {e}"));
            return Offset::UTC
                .to_timestamp(dt)
                .unwrap_or_else(|e| panic!("{dt} in range: {e}"));
        }
        let (_, local_text) = value
            .split_once(':')
            .unwrap_or_else(|| panic!("{value} has a value"));
        let parse = |text: &str| {
            civil::DateTime::strptime("%Y%m%dT%H%M%S", text)
                .unwrap_or_else(|e| panic!("{text} is a local DATE-TIME: {e}"))
        };
        // UTC-OFFSET: sign, HH, MM, optional SS.
        let parse_offset = |text: &str| -> i32 {
            let field = |range: std::ops::Range<usize>| -> i32 {
                text.get(range).map_or(0, |digits| {
                    digits
                        .parse()
                        .unwrap_or_else(|e| panic!("{text} is a UTC-OFFSET: {e}"))
                })
            };
            let sign = if text.starts_with('-') { -1 } else { 1 };
            sign * (field(1..3) * 3600 + field(3..5) * 60 + field(5..7))
        };
        let wall = parse(local_text);
        let offset = observance_lines(ics)
            .iter()
            .filter(|(_, onset, _, _)| parse(onset) <= wall)
            .max_by_key(|(_, onset, _, _)| parse(onset))
            .map(|(_, _, _, to)| parse_offset(to))
            .unwrap_or_else(|| panic!("no observance in force at {wall}"));
        let offset = Offset::from_seconds(offset).unwrap_or_else(|e| panic!("offset: {e}"));
        offset
            .to_timestamp(wall)
            .unwrap_or_else(|e| panic!("{wall} in range: {e}"))
    }

    #[test]
    fn every_line_ends_with_crlf_and_is_at_most_75_octets() {
        let mut long = event("a1", local("Europe/Paris", "2026-03-28T09:00"), 30);
        long.summary = "Téléconsultation de suivi — ".repeat(12);
        long.description = Some("é".repeat(200) + &"€".repeat(100) + &"😀".repeat(50));
        let ics = export(
            "Dr Exemple",
            "Europe/Paris",
            &zone("Europe/Paris"),
            &[long],
            now(),
        );
        assert!(ics.ends_with("\r\n"));
        assert!(
            !ics.replace("\r\n", "").contains(['\r', '\n']),
            "bare CR or LF"
        );
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
        }
    }

    #[test]
    fn folding_never_splits_a_utf8_sequence_and_unfolds_to_the_original_line() {
        for prefix in 0..4 {
            let text = "x".repeat(prefix) + &"é€😀".repeat(40);
            let mut lines = Lines::default();
            lines.push(&format!("SUMMARY:{text}"));
            // Every physical line is valid UTF-8 by construction (a &str); check the bound and
            // that the continuation lines start with exactly one space.
            let physical: Vec<&str> = lines.text.trim_end_matches("\r\n").split("\r\n").collect();
            assert!(physical.len() > 1);
            for (i, line) in physical.iter().enumerate() {
                assert!(line.len() <= 75, "{line:?}");
                assert_eq!(i > 0, line.starts_with(' '), "{line:?}");
            }
            // Lines fill up: no line is cut while the next character would still have fit.
            for pair in physical.windows(2) {
                let next = pair[1][1..].chars().next().map_or(0, char::len_utf8);
                assert!(pair[0].len() + next > 75, "{pair:?}");
            }
            assert_eq!(unfold(&lines.text)[0], format!("SUMMARY:{text}"));
        }
    }

    #[test]
    fn text_escapes_backslash_semicolon_comma_and_newlines_and_keeps_non_ascii() {
        assert_eq!(
            escape_text("a\\b;c,d\ne\r\nf\rg\th\u{7}i"),
            "a\\\\b\\;c\\,d\\ne\\nf\\ng\thi"
        );
        let mut e = event("a1", local("Europe/Paris", "2026-03-28T09:00"), 30);
        e.summary = "Téléconsultation; suivi, plaie\\pied\nJ+7".to_string();
        e.description = Some("Ligne 1\r\nLigne 2 — ça va".to_string());
        let ics = export(
            "Cabinet; Dr A, B",
            "Europe/Paris",
            &zone("Europe/Paris"),
            &[e],
            now(),
        );
        let lines = vevent(&ics, "a1");
        assert_eq!(
            property(&lines, "SUMMARY"),
            Some(":Téléconsultation\\; suivi\\, plaie\\\\pied\\nJ+7")
        );
        assert_eq!(
            property(&lines, "DESCRIPTION"),
            Some(":Ligne 1\\nLigne 2 — ça va")
        );
        assert!(unfold(&ics).contains(&"X-WR-CALNAME:Cabinet\\; Dr A\\, B".to_string()));
    }

    #[test]
    fn the_calendar_has_its_header_one_vtimezone_and_one_vevent_per_appointment() {
        let mut cancelled = event("b2", local("Europe/Paris", "2026-05-04T14:00"), 15);
        cancelled.cancelled = true;
        cancelled.sequence = 3;
        cancelled.description = Some("Annulé par le patient".into());
        let events = [
            event("a1", local("Europe/Paris", "2026-05-04T09:00"), 30),
            cancelled,
        ];
        let ics = export(
            "Dr Exemple",
            "Europe/Paris",
            &zone("Europe/Paris"),
            &events,
            now(),
        );
        let lines = unfold(&ics);
        assert_eq!(
            lines[..8],
            [
                "BEGIN:VCALENDAR",
                "PRODID:-//telehealth//scheduling//EN",
                "VERSION:2.0",
                "CALSCALE:GREGORIAN",
                "METHOD:PUBLISH",
                "X-WR-CALNAME:Dr Exemple",
                "X-WR-TIMEZONE:Europe/Paris",
                "BEGIN:VTIMEZONE",
            ]
        );
        assert_eq!(lines[8], "TZID:Europe/Paris");
        assert_eq!(lines.iter().filter(|l| *l == "BEGIN:VTIMEZONE").count(), 1);
        assert_eq!(lines.iter().filter(|l| *l == "BEGIN:VEVENT").count(), 2);
        assert_eq!(lines[lines.len() - 2..], ["END:VCALENDAR", ""]);

        let first = vevent(&ics, "a1");
        assert_eq!(property(&first, "DTSTAMP"), Some(":20260201T120000Z"));
        assert_eq!(property(&first, "LAST-MODIFIED"), Some(":20260105T100000Z"));
        assert_eq!(
            property(&first, "DTSTART"),
            Some(";TZID=Europe/Paris:20260504T090000")
        );
        assert_eq!(
            property(&first, "DTEND"),
            Some(";TZID=Europe/Paris:20260504T093000")
        );
        assert_eq!(property(&first, "SUMMARY"), Some(":Téléconsultation"));
        assert_eq!(property(&first, "DESCRIPTION"), None);
        assert_eq!(property(&first, "STATUS"), Some(":CONFIRMED"));
        assert_eq!(property(&first, "SEQUENCE"), Some(":0"));

        let second = vevent(&ics, "b2");
        assert_eq!(property(&second, "STATUS"), Some(":CANCELLED"));
        assert_eq!(property(&second, "SEQUENCE"), Some(":3"));
        assert_eq!(
            property(&second, "DESCRIPTION"),
            Some(":Annulé par le patient")
        );
    }

    /// Paris in 2026: summer time from 2026-03-29 02:00 (+01 → +02), back on 2026-10-25 03:00.
    fn paris_2026() -> Vec<(CalendarEvent, &'static str, &'static str)> {
        [
            ("before-spring", "2026-03-28T09:00", "2026-03-28T08:00:00Z"),
            ("spring-day", "2026-03-29T09:00", "2026-03-29T07:00:00Z"),
            ("after-spring", "2026-03-30T09:00", "2026-03-30T07:00:00Z"),
            ("before-autumn", "2026-10-24T09:00", "2026-10-24T07:00:00Z"),
            ("autumn-day", "2026-10-25T09:00", "2026-10-25T08:00:00Z"),
            ("after-autumn", "2026-10-26T09:00", "2026-10-26T08:00:00Z"),
        ]
        .into_iter()
        .map(|(uid, wall, expected)| (event(uid, local("Europe/Paris", wall), 30), wall, expected))
        .collect()
    }

    #[test]
    fn paris_appointments_at_9_local_around_both_2026_dst_changes_are_at_the_right_instants() {
        let cases = paris_2026();
        let events: Vec<CalendarEvent> = cases.iter().map(|(e, _, _)| e.clone()).collect();
        let ics = export(
            "Dr Exemple",
            "Europe/Paris",
            &zone("Europe/Paris"),
            &events,
            now(),
        );
        for (event, wall, expected) in &cases {
            // The test's own premise, independent of the export.
            assert_eq!(event.start, utc(expected), "{wall}");
            let lines = vevent(&ics, &event.uid);
            let dtstart = property(&lines, "DTSTART").unwrap_or_default();
            let local_text = wall.replace(['-', ':'], "") + "00";
            assert_eq!(dtstart, format!(";TZID=Europe/Paris:{local_text}"));
            assert_eq!(
                resolve_with_vtimezone(&ics, dtstart),
                utc(expected),
                "{wall}"
            );
            let dtend = property(&lines, "DTEND").unwrap_or_default();
            assert_eq!(
                resolve_with_vtimezone(&ics, dtend),
                utc(expected)
                    .checked_add(SignedDuration::from_mins(30))
                    .unwrap_or_else(|e| panic!("{e}"))
            );
        }
    }

    #[test]
    fn the_paris_vtimezone_has_the_real_2025_to_2027_changes() {
        let events = [event("a1", local("Europe/Paris", "2026-03-28T09:00"), 30)];
        let ics = export(
            "Dr Exemple",
            "Europe/Paris",
            &zone("Europe/Paris"),
            &events,
            now(),
        );
        let obs = |kind: &str, start: &str, from: &str, to: &str| {
            (
                kind.to_string(),
                start.to_string(),
                from.to_string(),
                to.to_string(),
            )
        };
        assert_eq!(
            observance_lines(&ics),
            [
                // In force a year before the event (2025-03-28): summer time ended 2024-10-27.
                obs("STANDARD", "20241027T030000", "+0200", "+0100"),
                obs("DAYLIGHT", "20250330T020000", "+0100", "+0200"),
                obs("STANDARD", "20251026T030000", "+0200", "+0100"),
                obs("DAYLIGHT", "20260329T020000", "+0100", "+0200"),
                obs("STANDARD", "20261025T030000", "+0200", "+0100"),
                obs("DAYLIGHT", "20270328T020000", "+0100", "+0200"),
            ]
        );
        let lines = unfold(&ics);
        assert!(lines.contains(&"TZNAME:CEST".to_string()));
        assert!(lines.contains(&"TZNAME:CET".to_string()));
    }

    #[test]
    fn noumea_far_from_utc_without_dst_gets_a_single_standard_observance_and_right_times() {
        let cases = [
            ("n1", "2026-01-15T09:00", "2026-01-14T22:00:00Z"),
            ("n2", "2026-07-15T08:30", "2026-07-14T21:30:00Z"),
        ];
        let events: Vec<CalendarEvent> = cases
            .iter()
            .map(|(uid, wall, _)| event(uid, local("Pacific/Noumea", wall), 20))
            .collect();
        let ics = export(
            "Nouméa",
            "Pacific/Noumea",
            &zone("Pacific/Noumea"),
            &events,
            now(),
        );
        let observances = observance_lines(&ics);
        assert_eq!(observances.len(), 1, "{observances:?}");
        assert_eq!(observances[0].0, "STANDARD");
        assert_eq!(observances[0].3, "+1100");
        for (uid, wall, expected) in cases {
            let lines = vevent(&ics, uid);
            let dtstart = property(&lines, "DTSTART").unwrap_or_default();
            assert!(dtstart.starts_with(";TZID=Pacific/Noumea:"), "{dtstart}");
            assert_eq!(
                resolve_with_vtimezone(&ics, dtstart),
                utc(expected),
                "{wall}"
            );
        }
    }

    #[test]
    fn los_angeles_appointments_around_both_2026_us_dst_changes_are_at_the_right_instants() {
        // US 2026: summer time from 2026-03-08, back on 2026-11-01.
        let cases = [
            ("la1", "2026-03-07T09:00", "2026-03-07T17:00:00Z"),
            ("la2", "2026-03-09T09:00", "2026-03-09T16:00:00Z"),
            ("la3", "2026-10-31T09:00", "2026-10-31T16:00:00Z"),
            ("la4", "2026-11-02T09:00", "2026-11-02T17:00:00Z"),
        ];
        let tz = "America/Los_Angeles";
        let events: Vec<CalendarEvent> = cases
            .iter()
            .map(|(uid, wall, _)| event(uid, local(tz, wall), 30))
            .collect();
        let ics = export("LA", tz, &zone(tz), &events, now());
        for (uid, wall, expected) in cases {
            let lines = vevent(&ics, uid);
            let dtstart = property(&lines, "DTSTART").unwrap_or_default();
            assert!(
                dtstart.starts_with(";TZID=America/Los_Angeles:"),
                "{dtstart}"
            );
            assert_eq!(
                resolve_with_vtimezone(&ics, dtstart),
                utc(expected),
                "{wall}"
            );
        }
    }

    #[test]
    fn a_local_time_that_occurs_twice_is_written_in_utc_and_its_neighbours_keep_their_tzid() {
        let tz = zone("Europe/Paris");
        // 2026-10-25, 03:00 CEST → 02:00 CET: 02:00–02:59 happen twice, at 00:xxZ and 01:xxZ.
        let cases = [
            (
                "00:59",
                "2026-10-24T23:59:00Z",
                ";TZID=Europe/Paris:20261025T015900",
            ),
            ("first-pass", "2026-10-25T00:30:00Z", ":20261025T003000Z"),
            ("second-pass", "2026-10-25T01:30:00Z", ":20261025T013000Z"),
            (
                "after",
                "2026-10-25T02:00:00Z",
                ";TZID=Europe/Paris:20261025T030000",
            ),
        ];
        let events: Vec<CalendarEvent> = cases
            .iter()
            .map(|(uid, start, _)| event(uid, utc(start), 30))
            .collect();
        let ics = export("Dr Exemple", "Europe/Paris", &tz, &events, now());
        for (uid, start, dtstart) in cases {
            let lines = vevent(&ics, uid);
            assert_eq!(property(&lines, "DTSTART"), Some(dtstart), "{uid}");
            assert_eq!(resolve_with_vtimezone(&ics, dtstart), utc(start), "{uid}");
        }
        // 23:59Z + 30 min = 02:29 first pass: the end of an event is treated the same way.
        let lines = vevent(&ics, "00:59");
        assert_eq!(property(&lines, "DTEND"), Some(":20261025T002900Z"));
    }

    #[test]
    fn an_end_not_after_the_start_is_left_out_and_sub_seconds_are_truncated() {
        let mut e = event("z", utc("2026-05-04T07:00:00.999Z"), 0);
        e.end = utc("2026-05-04T07:00:00.5Z");
        let ics = export("Dr", "Europe/Paris", &zone("Europe/Paris"), &[e], now());
        let lines = vevent(&ics, "z");
        assert_eq!(
            property(&lines, "DTSTART"),
            Some(";TZID=Europe/Paris:20260504T090000")
        );
        assert_eq!(property(&lines, "DTEND"), None);
    }

    #[test]
    fn an_empty_calendar_still_describes_its_zone() {
        let ics = export("Vide", "", &zone("Europe/Paris"), &[], now());
        let lines = unfold(&ics);
        assert!(lines.contains(&"TZID:Europe/Paris".to_string()));
        assert!(!lines.contains(&"BEGIN:VEVENT".to_string()));
        assert!(!observance_lines(&ics).is_empty());
    }

    #[test]
    fn a_zone_without_a_name_is_unnamed_and_an_odd_name_is_quoted_in_parameters() {
        let plus_five = TimeZone::fixed(jiff::tz::offset(5));
        let events = [event("f", utc("2026-05-04T04:00:00Z"), 30)];
        let ics = export("Fixe", "", &plus_five, &events, now());
        let lines = vevent(&ics, "f");
        assert_eq!(
            property(&lines, "DTSTART"),
            Some(";TZID=Unnamed:20260504T090000")
        );
        assert_eq!(
            observance_lines(&ics),
            [(
                "STANDARD".to_string(),
                "19700101T000000".to_string(),
                "+0500".to_string(),
                "+0500".to_string()
            )]
        );

        let ics = export("Fixe", "Cabinet: \"A\", B", &plus_five, &events, now());
        let lines = vevent(&ics, "f");
        assert_eq!(
            property(&lines, "DTSTART"),
            Some(";TZID=\"Cabinet: A, B\":20260504T090000")
        );
        assert!(unfold(&ics).contains(&"TZID:Cabinet: A\\, B".to_string()));
    }

    #[test]
    fn offsets_are_written_with_sign_hours_minutes_and_seconds_only_when_needed() {
        let offset = |s| Offset::from_seconds(s).unwrap_or(Offset::UTC);
        assert_eq!(offset_value(offset(3600)), "+0100");
        assert_eq!(offset_value(offset(-8 * 3600)), "-0800");
        assert_eq!(offset_value(offset(5 * 3600 + 1800)), "+0530");
        assert_eq!(offset_value(offset(0)), "+0000");
        assert_eq!(offset_value(offset(561)), "+000921");
    }

    /// Runs `tests/fixtures/ical_check.py` (PyPI `icalendar`) on `ics` with `args`; returns its
    /// rows `uid -> (start, end)`, or `None` when icalendar is missing outside CI.
    fn independent_parser(ics: &str, args: &[&str]) -> Option<Vec<(String, Timestamp, Timestamp)>> {
        let available = Command::new("python3")
            .args(["-c", "import icalendar"])
            .output()
            .is_ok_and(|out| out.status.success());
        if !available {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "python3 with the PyPI package `icalendar` is required in CI for the \
                     independent iCalendar check (pip install icalendar)"
                );
            }
            // Straight to stderr, not `eprintln!`: the test harness would capture it.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPING the independent iCalendar check: python3 cannot import icalendar \
                 (pip install icalendar)"
            );
            return None;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ical_check.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {script}: {e}"));
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("piped stdin"));
        let input = ics.as_bytes().to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("python3 {script}: {e}"));
        let written = writer
            .join()
            .unwrap_or_else(|_| panic!("writer thread panicked"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{script} {args:?} failed ({}):\n{stderr}\n--- input ---\n{ics}",
            output.status
        );
        written.unwrap_or_else(|e| panic!("writing to {script}: {e}"));
        let rows = stdout
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                assert_eq!(fields.len(), 3, "bad line from {script}: {line:?}");
                (fields[0].to_string(), utc(fields[1]), utc(fields[2]))
            })
            .collect();
        Some(rows)
    }

    #[test]
    fn an_independent_parser_reads_the_right_instants_through_the_vtimezone() {
        // Zone, uid, local start, expected UTC start (worked out by hand), minutes. "fold" is the
        // first pass through Paris's repeated hour (written in UTC); Sydney has summer time
        // across the new year.
        const MORE: &str = "
            Europe/Paris         fold        2026-10-25T02:30  2026-10-25T00:30:00Z  90
            Pacific/Noumea       noumea      2026-06-15T09:00  2026-06-14T22:00:00Z  30
            America/Los_Angeles  la-pst      2026-03-07T09:00  2026-03-07T17:00:00Z  30
            America/Los_Angeles  la-pdt      2026-03-09T09:00  2026-03-09T16:00:00Z  30
            America/Los_Angeles  la-back     2026-11-02T09:00  2026-11-02T17:00:00Z  30
            Australia/Sydney     syd-summer  2026-12-31T09:00  2026-12-30T22:00:00Z  30
            Australia/Sydney     syd-winter  2027-06-30T09:00  2027-06-29T23:00:00Z  30
        ";
        let mut cases: Vec<(&str, String, &str, &str, i64)> = paris_2026()
            .into_iter()
            .map(|(e, wall, expected)| ("Europe/Paris", e.uid, wall, expected, 30))
            .collect();
        for row in MORE.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = row.split_whitespace().collect();
            let minutes = f[4].parse().unwrap_or_else(|e| panic!("{row}: {e}"));
            cases.push((f[0], f[1].to_string(), f[2], f[3], minutes));
        }

        for zone_name in [
            "Europe/Paris",
            "Pacific/Noumea",
            "America/Los_Angeles",
            "Australia/Sydney",
        ] {
            let mut events = Vec::new();
            let mut expected = Vec::new();
            for (_, uid, wall, utc_start, minutes) in cases.iter().filter(|c| c.0 == zone_name) {
                let e = event(uid, local(zone_name, wall), *minutes);
                assert_eq!(e.start, utc(utc_start), "premise: {uid} {wall} {zone_name}");
                expected.push(((*uid).to_owned(), e.start, e.end));
                events.push(e);
            }
            if zone_name == "Europe/Paris" {
                // The second pass through the repeated hour, with text to unescape.
                let mut second = event("second-pass", utc("2026-10-25T01:30:00Z"), 30);
                second.summary = "Repeated hour; second pass, \\ ok\né".into();
                expected.push(("second-pass".into(), second.start, second.end));
                events.push(second);
            }
            let ics = export("Dr Exemple", zone_name, &zone(zone_name), &events, now());
            // Through the file's VTIMEZONE (what an app that does not know the zone does), then
            // through Python's own tz database by TZID name (what most apps do).
            for args in [&[][..], &["--tzdb"][..]] {
                let Some(rows) = independent_parser(&ics, args) else {
                    return;
                };
                assert_eq!(rows, expected, "{zone_name} {args:?}\n{ics}");
            }
        }
    }
}
