//! The scheduling vocabulary: validated values the core works with. Everything here is checked
//! once, at the edge (the gRPC adapter), so the rest never sees an unchecked string.

use jiff::{
    SignedDuration, Timestamp,
    civil::{Date, Time, Weekday},
    tz::TimeZone,
};

/// Longest appointment, in minutes (8 hours).
pub const MAX_DURATION_MINUTES: i64 = 480;
/// Shortest appointment, in minutes.
pub const MIN_DURATION_MINUTES: i64 = 5;
/// Most weekly ranges an availability may have.
pub const MAX_WEEKLY_RANGES: usize = 100;

pub use telehealth_kit::ids::Subject;

/// An IANA time zone (`Europe/Paris`), with its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// The zone named `name`, or INVALID_ARGUMENT naming `field`.
    pub fn parse(field: &'static str, name: &str) -> Result<Zone, Invalid> {
        let tz = TimeZone::get(name)
            .map_err(|_| Invalid::new(field, "must be an IANA time zone such as Europe/Paris"))?;
        Ok(Zone {
            name: name.to_owned(),
            tz,
        })
    }

    /// Europe/Paris, the default of French centres.
    pub fn paris() -> Zone {
        Zone::parse("time_zone", "Europe/Paris").expect("the bundled tz database has Europe/Paris")
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's rules.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
}

/// A half-open interval of instants `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Interval {
    /// `[start, end)`; refuses empty or inverted intervals.
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Interval, Invalid> {
        if end <= start {
            return Err(Invalid::new("time", "end must be after start"));
        }
        Ok(Interval { start, end })
    }

    /// True when the two intervals share at least one instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// True when `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Interval) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// The interval widened by `margin` on both sides (appointment buffers).
    pub fn widened(&self, margin: SignedDuration) -> Interval {
        Interval {
            start: self.start.checked_sub(margin).unwrap_or(self.start),
            end: self.end.checked_add(margin).unwrap_or(self.end),
        }
    }

    /// Its length.
    pub fn duration(&self) -> SignedDuration {
        self.end.duration_since(self.start)
    }
}

/// One weekly recurring availability range, in the practitioner's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklyRange {
    pub day: Weekday,
    pub start: Time,
    pub end: Time,
}

/// A practitioner's weekly availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyAvailability {
    pub zone: Zone,
    /// Sorted by day then start; no two ranges of a day overlap.
    pub ranges: Vec<WeeklyRange>,
    /// Free time kept before and after each appointment, in minutes (0-120).
    pub buffer_minutes: i64,
}

impl WeeklyAvailability {
    /// Validates ranges (not inverted, not empty, not overlapping on a day) and the buffer.
    pub fn new(
        zone: Zone,
        mut ranges: Vec<WeeklyRange>,
        buffer_minutes: i64,
    ) -> Result<Self, Invalid> {
        if !(0..=120).contains(&buffer_minutes) {
            return Err(Invalid::new("buffer_minutes", "must be between 0 and 120"));
        }
        if ranges.len() > MAX_WEEKLY_RANGES {
            return Err(Invalid::new(
                "weekly_ranges",
                format!("at most {MAX_WEEKLY_RANGES} values, got {}", ranges.len()),
            ));
        }
        for range in &ranges {
            if range.end <= range.start {
                return Err(Invalid::new(
                    "weekly_ranges",
                    format!(
                        "{:?} {}-{} is empty or inverted: the end must be after the start",
                        range.day,
                        hhmm(range.start),
                        hhmm(range.end)
                    ),
                ));
            }
        }
        ranges.sort_by_key(|r| (r.day.to_monday_one_offset(), r.start));
        for pair in ranges.windows(2) {
            if pair[0].day == pair[1].day && pair[1].start < pair[0].end {
                return Err(Invalid::new(
                    "weekly_ranges",
                    format!(
                        "{:?} {}-{} overlaps {}-{}",
                        pair[1].day,
                        hhmm(pair[1].start),
                        hhmm(pair[1].end),
                        hhmm(pair[0].start),
                        hhmm(pair[0].end)
                    ),
                ));
            }
        }
        Ok(WeeklyAvailability {
            zone,
            ranges,
            buffer_minutes,
        })
    }

    /// The buffer as a duration.
    pub fn buffer(&self) -> SignedDuration {
        SignedDuration::from_mins(self.buffer_minutes)
    }
}

/// What an exception does to availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionKind {
    /// The practitioner is away.
    Leave,
    /// The practitioner's (or the whole centre's) activity is closed.
    Closure,
    /// Extra hours outside the weekly availability.
    ExtraHours,
}

/// An exception to weekly availability over a span of local dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailabilityException {
    pub id: String,
    pub kind: ExceptionKind,
    /// `None` for an org-wide closure.
    pub practitioner: Option<Subject>,
    /// First and last local dates (inclusive).
    pub start_date: Date,
    pub end_date: Date,
    /// Daily local window on each date; `None` means the whole day (leave and closure only).
    pub window: Option<(Time, Time)>,
    pub zone: Zone,
}

/// `HH:MM` of a local time.
pub fn hhmm(time: Time) -> String {
    format!("{:02}:{:02}", time.hour(), time.minute())
}

/// Parses `HH:MM` (00:00-24:00; 24:00 only as an end, meaning midnight at the end of the day).
pub fn parse_hhmm(field: &'static str, text: &str) -> Result<Time, Invalid> {
    let invalid = || Invalid::new(field, format!("`{text}` is not a local time HH:MM"));
    let (h, m) = text.split_once(':').ok_or_else(invalid)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(invalid());
    }
    let hour: i8 = h.parse().map_err(|_| invalid())?;
    let minute: i8 = m.parse().map_err(|_| invalid())?;
    if hour == 24 && minute == 0 {
        // Represented as the last representable instant of the day.
        return Ok(Time::MAX);
    }
    Time::new(hour, minute, 0, 0).map_err(|_| invalid())
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(field: &'static str, text: &str) -> Result<Date, Invalid> {
    text.parse::<Date>()
        .ok()
        .filter(|_| text.len() == 10)
        .ok_or_else(|| Invalid::new(field, format!("`{text}` is not a date YYYY-MM-DD")))
}

/// `HH:MM` of an end of range, `24:00` for the end of the day.
pub fn end_text(time: jiff::civil::Time) -> String {
    if time == jiff::civil::Time::MAX {
        "24:00".to_owned()
    } else {
        hhmm(time)
    }
}

/// A value that is not valid: which field, and why. The service answers it as
/// `INVALID_ARGUMENT` naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Invalid {
            field,
            reason: reason.into(),
        }
    }
}
