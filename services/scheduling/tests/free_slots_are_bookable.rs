//! Property: over random weekly rules, exceptions, busy time, days and time zones, the free
//! slots a listing offers are exactly the bookable starts of the step grid.
//!
//! `ListFreeSlots` answers with [`slots::free_slots`] (or [`slots::common_slots`] for
//! `SLOT_MATCH_ALL`) and `BookAppointment` accepts a time when [`slots::conflicts`] finds nothing,
//! on the same calendars. So for every start whose local time is on the step grid (aligned on the
//! local hour: `HH:00 + k·step` within the hour) in the range:
//!
//! - every listed slot is bookable (no conflict), on the grid, in the range, `duration` long;
//! - every bookable grid start is listed.
//!
//! The grid is recomputed here from first principles (every whole minute of the range, kept when
//! its local minute is a multiple of the step), and the days are drawn around the zones' DST
//! transitions (gaps, folds, 30-minute changes, changes at midnight, odd offsets).

use jiff::{
    SignedDuration, Timestamp,
    civil::{Date, Time, Weekday},
    tz::TimeZone,
};
use proptest::prelude::*;
use telehealth_scheduling::{
    domain::{
        AvailabilityException, ExceptionKind, Interval, Subject, WeeklyAvailability, WeeklyRange,
        Zone,
    },
    slots::{self, Busy, PractitionerCalendar},
};

/// Zones with every kind of change: DST gap and fold, 30-minute DST (Lord Howe), a change at
/// midnight (Havana, Santiago), odd offsets (Kathmandu +05:45, Chatham +12:45, St John's -03:30),
/// the southern hemisphere, none at all.
const ZONES: [&str; 10] = [
    "Europe/Paris",
    "America/Los_Angeles",
    "Australia/Lord_Howe",
    "America/Havana",
    "America/Santiago",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/St_Johns",
    "Europe/London",
    "UTC",
];

/// Steps a client may ask for (the contract allows 5 to 60 minutes).
const STEPS: [i64; 9] = [5, 10, 12, 15, 20, 25, 30, 45, 60];

fn zone(index: usize) -> Zone {
    Zone::parse("time_zone", ZONES[index % ZONES.len()]).expect("the bundled tz database has it")
}

fn mins(minutes: i64) -> SignedDuration {
    SignedDuration::from_mins(minutes)
}

/// A local time from minutes since midnight; 1440 is `24:00` (the end of the day).
fn time_of(minutes: i64) -> Time {
    if minutes >= 24 * 60 {
        Time::MAX
    } else {
        Time::new(
            i8::try_from(minutes / 60).expect("an hour"),
            i8::try_from(minutes % 60).expect("a minute"),
            0,
            0,
        )
        .expect("a valid time")
    }
}

/// The zone's offset changes in 2027, or the start of 2027 for a zone without any.
fn anchors(tz: &TimeZone) -> Vec<Timestamp> {
    let from: Timestamp = "2027-01-01T00:00:00Z".parse().expect("instant");
    let to: Timestamp = "2028-01-01T00:00:00Z".parse().expect("instant");
    let changes: Vec<Timestamp> = tz
        .following(from)
        .map(|t| t.timestamp())
        .take_while(|at| *at < to)
        .collect();
    if changes.is_empty() {
        vec![from]
    } else {
        changes
    }
}

/// A random exception: (kind 0-2, org-wide, first date as days from the range's first date,
/// length in days, daily window (start minute, length) or whole days, its zone or the
/// calendar's).
type ExceptionDraw = (u8, bool, i64, i64, Option<(i64, i64)>, Option<usize>);

/// What a random calendar is made of (raw numbers; [`Draw::calendar`] builds it).
#[derive(Debug, Clone)]
struct Draw {
    zone: usize,
    /// (day 1-7, start minute, length in minutes)
    ranges: Vec<(i8, i64, i64)>,
    buffer: i64,
    exceptions: Vec<ExceptionDraw>,
    /// (start in minutes from the range start, length in minutes, is a hold)
    busy: Vec<(i64, i64, bool)>,
}

fn draw() -> impl Strategy<Value = Draw> {
    (
        0..ZONES.len(),
        prop::collection::vec((1_i8..=7, 0_i64..24 * 60, 5_i64..=12 * 60), 0..8),
        0_i64..=30,
        prop::collection::vec(
            (
                0_u8..3,
                any::<bool>(),
                -2_i64..=3,
                0_i64..=2,
                prop::option::of((0_i64..24 * 60, 5_i64..=6 * 60)),
                prop::option::of(0..ZONES.len()),
            ),
            0..3,
        ),
        prop::collection::vec((-12 * 60_i64..=72 * 60, 5_i64..=180, any::<bool>()), 0..6),
    )
        .prop_map(|(zone, ranges, buffer, exceptions, busy)| Draw {
            zone,
            ranges,
            buffer,
            exceptions,
            busy,
        })
}

impl Draw {
    fn calendar(&self, name: &str, range: Interval) -> PractitionerCalendar {
        let zone = zone(self.zone);
        let subject = Subject::parse("subject", name).expect("a subject");
        // Weekly ranges, dropping those that overlap an earlier one of the same day.
        let mut ranges: Vec<(i8, i64, i64)> = self
            .ranges
            .iter()
            .map(|&(day, start, length)| (day, start, (start + length).min(24 * 60)))
            .collect();
        ranges.sort_unstable();
        let mut kept: Vec<(i8, i64, i64)> = Vec::new();
        for range in ranges {
            if kept
                .last()
                .is_none_or(|last| last.0 != range.0 || last.2 <= range.1)
            {
                kept.push(range);
            }
        }
        let weekly = kept
            .iter()
            .map(|&(day, start, end)| WeeklyRange {
                day: Weekday::from_monday_one_offset(day).expect("a weekday"),
                start: time_of(start),
                end: time_of(end),
            })
            .collect();
        let availability =
            WeeklyAvailability::new(zone.clone(), weekly, self.buffer).expect("valid ranges");
        let first: Date = zone.tz().to_datetime(range.start).date();
        let exceptions = self
            .exceptions
            .iter()
            .enumerate()
            .map(
                |(index, &(kind, org_wide, from, days, window, other_zone))| {
                    let start_date = first
                        .checked_add(jiff::Span::new().days(from))
                        .expect("a date");
                    AvailabilityException {
                        id: format!("exception-{index}"),
                        kind: match kind {
                            0 => ExceptionKind::Leave,
                            1 => ExceptionKind::Closure,
                            _ => ExceptionKind::ExtraHours,
                        },
                        practitioner: (!org_wide).then(|| subject.clone()),
                        start_date,
                        end_date: start_date
                            .checked_add(jiff::Span::new().days(days))
                            .expect("a date"),
                        window: window.map(|(start, length)| {
                            (time_of(start), time_of((start + length).min(24 * 60)))
                        }),
                        zone: other_zone.map_or_else(|| zone.clone(), self::zone),
                    }
                },
            )
            .collect();
        let busy = self
            .busy
            .iter()
            .enumerate()
            .map(|(index, &(from, length, is_hold))| {
                let start = range.start + mins(from);
                Busy {
                    time: Interval::new(start, start + mins(length)).expect("not empty"),
                    id: format!("busy-{index}"),
                    is_hold,
                }
            })
            .collect();
        PractitionerCalendar {
            subject,
            availability,
            exceptions,
            busy,
        }
    }
}

/// The query: range, duration, step, now and the minimum notice.
#[derive(Debug, Clone)]
struct Query {
    range: Interval,
    duration: SignedDuration,
    step: SignedDuration,
    now: Timestamp,
    not_before: Timestamp,
}

/// A range of 1 to 72 hours starting near one of `zone`'s 2027 changes (anywhere from 36 hours
/// before to 12 hours after it, to the second).
fn query(zone_index: usize) -> impl Strategy<Value = Query> {
    let anchors = anchors(zone(zone_index).tz());
    (
        0..anchors.len(),
        -36 * 3600_i64..=12 * 3600,
        3600_i64..=72 * 3600,
        1_i64..=48,
        0..STEPS.len(),
        -2 * 60_i64..=30 * 60,
        0_i64..=180,
    )
        .prop_map(
            move |(anchor, offset, length, duration, step, now, notice)| {
                let start = anchors[anchor] + SignedDuration::from_secs(offset);
                let range = Interval::new(start, start + SignedDuration::from_secs(length))
                    .expect("not empty");
                let now = range.start + mins(now);
                Query {
                    range,
                    duration: mins(duration * 5),
                    step: mins(STEPS[step]),
                    now,
                    not_before: now + mins(notice),
                }
            },
        )
}

/// Every start of the step grid in `query.range`: each whole minute whose local time in `zone`
/// has its minute a multiple of the step.
fn grid(zone: &Zone, query: &Query) -> Vec<Timestamp> {
    let step = query.step.as_mins();
    let first_minute = query.range.start.as_second().div_euclid(60)
        + i64::from(
            query.range.start.as_second().rem_euclid(60) != 0
                || query.range.start.subsec_nanosecond() != 0,
        );
    let mut at = Timestamp::from_second(first_minute * 60).expect("instant");
    let mut starts = Vec::new();
    while at < query.range.end {
        let local = zone.tz().to_datetime(at);
        if i64::from(local.minute()) % step == 0 {
            starts.push(at);
        }
        at += mins(1);
    }
    starts
}

fn bookable(calendars: &[PractitionerCalendar], start: Timestamp, query: &Query) -> bool {
    let time = Interval::new(start, start + query.duration).expect("not empty");
    calendars
        .iter()
        .all(|calendar| slots::conflicts(calendar, time, query.now, query.not_before).is_empty())
}

/// The property for the calendars listed together (one: `free_slots`; several: `common_slots`).
fn listed_is_bookable(
    calendars: &[PractitionerCalendar],
    query: &Query,
) -> Result<(), TestCaseError> {
    let listed = if calendars.len() == 1 {
        slots::free_slots(
            &calendars[0],
            query.range,
            query.duration,
            query.step,
            query.not_before,
        )
    } else {
        slots::common_slots(
            calendars,
            query.range,
            query.duration,
            query.step,
            query.not_before,
        )
    };
    let zone = &calendars[0].availability.zone;
    for slot in &listed {
        prop_assert_eq!(slot.end, slot.start + query.duration, "real duration");
        prop_assert!(
            query.range.start <= slot.start && slot.start < query.range.end,
            "{} starts in the range",
            slot.start
        );
        prop_assert_eq!(
            (slot.local_start, slot.utc_offset),
            (
                zone.tz().to_datetime(slot.start),
                zone.tz().to_offset(slot.start)
            ),
            "local start and offset of {}",
            slot.start
        );
        prop_assert!(
            bookable(calendars, slot.start, query),
            "listed but not bookable: {} ({} {})",
            slot.start,
            slot.local_start,
            slot.utc_offset
        );
    }
    let listed: Vec<Timestamp> = listed.iter().map(|slot| slot.start).collect();
    let expected: Vec<Timestamp> = grid(zone, query)
        .into_iter()
        .filter(|start| bookable(calendars, *start, query))
        .collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|start| !listed.contains(start))
        .map(|start| format!("{start} ({})", zone.tz().to_datetime(*start)))
        .collect();
    prop_assert!(missing.is_empty(), "bookable but not listed: {:?}", missing);
    prop_assert_eq!(
        listed,
        expected,
        "exactly the bookable grid starts, in order"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_listed_slot_is_bookable_and_every_bookable_slot_is_listed(
        (calendar, query) in draw().prop_flat_map(|calendar| {
            let zone = calendar.zone;
            (Just(calendar), query(zone))
        })
    ) {
        let calendar = calendar.calendar("dr-martin", query.range);
        listed_is_bookable(&[calendar], &query)?;
    }

    #[test]
    fn common_slots_are_the_starts_bookable_for_every_practitioner(
        (doctor, nurse, query) in (draw(), draw()).prop_flat_map(|(doctor, nurse)| {
            let zone = doctor.zone;
            (Just(doctor), Just(nurse), query(zone))
        })
    ) {
        let calendars = [
            doctor.calendar("dr-martin", query.range),
            nurse.calendar("nurse-lea", query.range),
        ];
        listed_is_bookable(&calendars, &query)?;
    }
}
