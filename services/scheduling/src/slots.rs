//! Free slots and booking conflicts: the pure calendar arithmetic of scheduling (docs/design.md, "Scheduling").
//!
//! Nothing here does I/O or reads a clock: the caller loads a [`PractitionerCalendar`] (weekly
//! availability, exceptions, time already taken) and passes "now" and "not before" (now plus
//! the minimum notice) as parameters.
//!
//! # Model
//!
//! A practitioner's **open windows** are instants `[start, end)` computed as
//!
//! > (weekly ranges ∪ extra hours) − (leave ∪ closures)
//!
//! then sorted and merged (touching windows merge: Monday 20:00-24:00 and Tuesday 00:00-02:00 are
//! one window, so a slot may cross midnight).
//!
//! - Weekly ranges are local times in the practitioner's zone ([`WeeklyAvailability::zone`]). They
//!   are laid out on every local date that can touch the period of interest, with one date of
//!   margin on both sides (offsets and folds move instants across dates).
//! - An end of [`Time::MAX`] (`24:00` from [`crate::domain::parse_hhmm`]) means midnight at the
//!   end of the day, i.e. 00:00 local on the next date.
//! - Exceptions are laid out in their own [`AvailabilityException::zone`] on each local date
//!   `start_date..=end_date`. Leave and closures without a window remove whole local days, with a
//!   window they remove that window on each date; extra hours add their window on each date.
//!   Extra hours without a window are ignored (the model requires one; opening a whole day on bad
//!   data would be the unsafe choice). An exception with `practitioner: None` (org-wide) applies
//!   to everyone; one naming another practitioner is ignored. A window whose end is not after its
//!   start is ignored (windows do not run overnight). Leave and closures win over extra hours.
//! - **Busy** time (appointments and holds) is widened by the buffer
//!   ([`WeeklyAvailability::buffer`]) on both sides, **holds included**: a hold is an appointment
//!   being confirmed, and a slot booked against a hold's unbuffered edge would make that
//!   confirmation fail. An appointment 10:00-10:30 with a 10-minute buffer blocks every slot that
//!   overlaps 09:50-10:40.
//!
//! # Daylight saving time
//!
//! Local times become instants by the contract's rule (`WeeklyRange` in scheduling.proto):
//!
//! - a local time that **does not exist** (in a gap, clocks going forward) is the first instant
//!   after it, the transition itself: in Europe/Paris on 2026-03-29, 02:00-02:59 do not exist
//!   and 02:30 is 03:00 CEST (01:00Z), so a range 02:30-05:00 starts at 03:00;
//! - a local time that **exists twice** (in a fold, clocks going back) is its *first* occurrence:
//!   in Europe/Paris on 2026-10-25, 02:30 is 02:30 CEST (00:30Z).
//!
//! Hence a weekly range keeps its local time across a change (09:00 is 08:00Z in winter and 07:00Z
//! in summer), 01:00-04:00 on 2026-03-29 is only 2 real hours, and 01:00-04:00 on 2026-10-25 is 4
//! real hours. Durations (`duration`, the buffer) are always real elapsed time.
//!
//! # Candidate starts: the step grid
//!
//! Slot **starts** are the instants whose local time (in the zone of the listing: the
//! practitioner's, or the first one's for common slots) is on the step grid, which is aligned on
//! the local hour: `HH:00`, `HH:00 + step`, `HH:00 + 2·step`, … while still in that hour (with a
//! 15-minute step, :00 :15 :30 :45; a step that does not divide the hour, e.g. 25 minutes, gives
//! :00 :25 :50 and starts again at the next hour). Whether a time is a start therefore depends
//! only on its local time, never on where a window starts or how windows merge; a start is
//! offered when its whole slot is free (see [`free_slots`]), which is exactly when
//! [`conflicts`] finds nothing for it: **every bookable start of the grid is listed, and every
//! listed one is bookable** (the property test `tests/free_slots_are_bookable.rs` checks this over
//! random calendars, days and zones).
//!
//! Across a change this gives: no start in a gap (those local times do not exist), both
//! instants of a start in a fold when both are inside a window (the window really has that hour
//! twice; on 2026-10-25 a window 02:30 CEST-05:00 CET offers 02:30 and 02:45 CEST, then 02:00,
//! 02:15, … CET), and 03:00 CEST as the first start of a range 02:30-05:00 on 2026-03-29. Each
//! slot carries its local start and UTC offset, which tell the two passes of a fold apart.
//!
//! # Complexity
//!
//! With `D` days in the range, `R` weekly ranges, `E` exceptions, `B` busy intervals and `S`
//! candidate starts (about range / step): windows cost `O((D·R + D·E) log)`, busy intervals are
//! sorted and merged once (`O(B log B)`), and the sorted candidate starts are swept against them
//! in one pass (`O(S + B)`), never `O(S × B)`. Each window is cut at the zone's transitions (found
//! once per query) into pieces of constant offset, in which the grid steps with no time zone
//! lookup per start.

use std::fmt::Write as _;

use jiff::{
    SignedDuration, Timestamp,
    civil::{Date, DateTime, Time},
    tz::{AmbiguousOffset, Offset, TimeZone},
};

use crate::{
    domain::{
        AvailabilityException, ExceptionKind, Interval, Subject, WeeklyAvailability, Zone, hhmm,
    },
    error::{Conflict, ConflictKind},
};

/// Everything known about one practitioner's calendar over the period of interest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PractitionerCalendar {
    /// The practitioner.
    pub subject: Subject,
    /// Weekly availability, its zone and the buffer kept around appointments and holds.
    pub availability: WeeklyAvailability,
    /// Exceptions (leave, closure, extra hours; the practitioner's own and org-wide ones).
    /// Exceptions naming another practitioner are ignored.
    pub exceptions: Vec<AvailabilityException>,
    /// Time already taken, without buffers: the functions widen each interval (appointment or
    /// hold) by `availability.buffer()` themselves. Any order. To reschedule an appointment or
    /// confirm a hold, leave that one out, or it conflicts with itself.
    pub busy: Vec<Busy>,
}

/// Time already taken in a practitioner's calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The appointment's or hold's time, without buffer.
    pub time: Interval,
    /// The appointment or hold id.
    pub id: String,
    /// True for a hold (a slot kept for a few minutes while a patient confirms).
    pub is_hold: bool,
}

/// A free start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// First instant of the slot.
    pub start: Timestamp,
    /// End of the slot (exclusive): `start + duration`.
    pub end: Timestamp,
    /// The start in the (first) practitioner's local time.
    pub local_start: DateTime,
    /// The UTC offset at `start` in that zone (tells the two occurrences of a folded hour apart).
    pub utc_offset: Offset,
}

/// Open windows (weekly ranges + extra hours − leave − closures) intersecting `range`, as
/// instants, sorted, merged, and clipped to `range`.
pub fn open_windows(calendar: &PractitionerCalendar, range: Interval) -> Vec<Interval> {
    open_windows_around(calendar, range)
        .into_iter()
        .filter_map(|window| clip(window, range))
        .collect()
}

/// Free start times in `range` for `duration`, sorted by start.
///
/// Starts are the local times of the step grid, aligned on the local hour (see the module
/// documentation); a slot `[start, start + duration)` is offered when it lies inside one open
/// window, overlaps no busy interval widened by the buffer, starts at or after `not_before`
/// (now + minimum notice) and starts inside `range` (it may end after `range.end`): exactly the
/// grid starts for which [`conflicts`] (with the same "now" and `not_before`) finds nothing. A
/// non-positive `duration` or `step` gives no slot.
pub fn free_slots(
    calendar: &PractitionerCalendar,
    range: Interval,
    duration: SignedDuration,
    step: SignedDuration,
    not_before: Timestamp,
) -> Vec<Slot> {
    common_slots(
        std::slice::from_ref(calendar),
        range,
        duration,
        step,
        not_before,
    )
}

/// Every reason why `time` cannot be booked for this practitioner; empty means bookable.
///
/// In this order: [`ConflictKind::InThePast`] (start before `now`) or
/// [`ConflictKind::MinimumNotice`] (`now <= start < not_before`);
/// [`ConflictKind::OutsideAvailability`] when `time` is not inside one window of weekly ranges
/// and extra hours; one [`ConflictKind::Exception`] per leave or closure overlapping `time`
/// (with its id; this is how time taken out of the availability by an exception is reported);
/// then, by start, one [`ConflictKind::OverlappingAppointment`] or [`ConflictKind::Held`] per
/// busy interval overlapping `time`, or [`ConflictKind::Buffer`] when only its buffer zone does.
///
/// `Conflict::time` is the interval in the way: the appointment or hold (widened by the buffer
/// for `Buffer`), the exception's occurrences overlapping `time`, or `time` itself for the
/// other kinds. Messages name the practitioner and local times in the practitioner's zone.
pub fn conflicts(
    calendar: &PractitionerCalendar,
    time: Interval,
    now: Timestamp,
    not_before: Timestamp,
) -> Vec<Conflict> {
    let who = calendar.subject.as_str();
    let zone = &calendar.availability.zone;
    let span = describe_span(zone, time);
    let conflict = |kind, time, appointment_id, exception_id, message| Conflict {
        kind,
        practitioner: who.to_owned(),
        time,
        appointment_id,
        exception_id,
        message,
    };
    let mut found = Vec::new();

    if time.start < now {
        let message = format!("{who} cannot be booked {span}: that time is in the past");
        found.push(conflict(ConflictKind::InThePast, time, None, None, message));
    } else if time.start < not_before {
        let notice = not_before.duration_since(now);
        let message = format!(
            "{who} cannot be booked {span}: bookings need {} of notice, the earliest start is {}",
            describe_duration(notice),
            describe_instant(zone, not_before),
        );
        found.push(conflict(
            ConflictKind::MinimumNotice,
            time,
            None,
            None,
            message,
        ));
    }

    let positive = available_windows(calendar, time);
    if !positive.iter().any(|window| window.contains(&time)) {
        let message = format!("{who} is not available {span}: outside their published hours");
        found.push(conflict(
            ConflictKind::OutsideAvailability,
            time,
            None,
            None,
            message,
        ));
    }

    for exception in applicable(calendar).filter(|e| removes_time(e.kind)) {
        let overlapping =
            occurrences(exception, time).filter(|occurrence| occurrence.overlaps(&time));
        let Some(hull) = overlapping.reduce(|a, b| Interval {
            start: a.start.min(b.start),
            end: a.end.max(b.end),
        }) else {
            continue;
        };
        let message = describe_exception(who, zone, exception, hull);
        found.push(conflict(
            ConflictKind::Exception,
            hull,
            None,
            Some(exception.id.clone()),
            message,
        ));
    }

    let buffer = calendar.availability.buffer();
    let mut in_the_way: Vec<&Busy> = calendar
        .busy
        .iter()
        .filter(|taken| taken.time.widened(buffer).overlaps(&time))
        .collect();
    in_the_way.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    for taken in in_the_way {
        let (id, taken_span) = (&taken.id, describe_span(zone, taken.time));
        let (kind, conflict_time, message) = if !taken.time.overlaps(&time) {
            let what = if taken.is_hold { "hold" } else { "appointment" };
            let buffer_text = describe_duration(buffer);
            let message = format!("{who} keeps {buffer_text} free around {what} {id} {taken_span}");
            (ConflictKind::Buffer, taken.time.widened(buffer), message)
        } else if taken.is_hold {
            let message =
                format!("{who}'s time {taken_span} is held for another booking (hold {id})");
            (ConflictKind::Held, taken.time, message)
        } else {
            let message = format!("{who} already has appointment {id} {taken_span}");
            (ConflictKind::OverlappingAppointment, taken.time, message)
        };
        found.push(conflict(
            kind,
            conflict_time,
            Some(id.clone()),
            None,
            message,
        ));
    }
    found
}

/// Slots free for all the given calendars at the same time (booking a doctor and a nurse
/// together), sorted by start.
///
/// The open windows are the intersection of every calendar's open windows; busy time is every
/// calendar's busy intervals, each widened by its own calendar's buffer. Starts are on the step
/// grid of the **first** calendar's local time, and `local_start` and `utc_offset` are in that
/// zone. Otherwise as [`free_slots`]. No calendar gives no slot.
pub fn common_slots(
    calendars: &[PractitionerCalendar],
    range: Interval,
    duration: SignedDuration,
    step: SignedDuration,
    not_before: Timestamp,
) -> Vec<Slot> {
    let Some(first) = calendars.first() else {
        return Vec::new();
    };
    if !duration.is_positive() || !step.is_positive() {
        return Vec::new();
    }
    let mut windows = open_windows_around(first, range);
    for other in &calendars[1..] {
        windows = intersect(&windows, &open_windows_around(other, range));
    }
    let blocked = merge(
        calendars
            .iter()
            .flat_map(|calendar| {
                let buffer = calendar.availability.buffer();
                calendar
                    .busy
                    .iter()
                    .map(move |taken| taken.time.widened(buffer))
            })
            .collect(),
    );
    let wanted = Wanted {
        range,
        duration,
        step,
        not_before,
    };
    slots_in(&windows, &blocked, first.availability.zone.tz(), wanted)
}

/// What a slot query asks for.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    range: Interval,
    duration: SignedDuration,
    step: SignedDuration,
    not_before: Timestamp,
}

/// Candidate starts on the step grid of `tz` (see the module documentation) in each window, kept
/// when free.
///
/// `windows` and `blocked` are sorted and merged; candidates come out sorted (windows are
/// disjoint and each window's candidates are sorted), so one pointer sweeps `blocked`.
fn slots_in(
    windows: &[Interval],
    blocked: &[Interval],
    tz: &TimeZone,
    wanted: Wanted,
) -> Vec<Slot> {
    let earliest = wanted.range.start.max(wanted.not_before);
    let mut slots = Vec::new();
    let mut candidates = Vec::new();
    let mut next_blocked = 0;
    let transitions = transitions_near(tz, windows);
    for window in windows {
        if window.end <= earliest || window.start >= wanted.range.end {
            continue;
        }
        candidates.clear();
        window_candidates(*window, tz, &transitions, wanted, &mut candidates);
        for slot in &candidates {
            if slot.start < earliest || slot.start >= wanted.range.end {
                continue;
            }
            while blocked
                .get(next_blocked)
                .is_some_and(|b| b.end <= slot.start)
            {
                next_blocked += 1;
            }
            // `blocked[next_blocked]` is the first blocked interval ending after the start; the
            // intervals are disjoint and sorted, so it is the only one that can overlap.
            if blocked
                .get(next_blocked)
                .is_none_or(|b| b.start >= slot.end)
            {
                slots.push(*slot);
            }
        }
    }
    slots
}

/// Pushes, in order, every start on the step grid whose slot fits inside `window` and that
/// starts before `wanted.range.end`; `transitions` are [`transitions_near`] the windows.
///
/// The window is cut at `tz`'s transitions into pieces of constant UTC offset; within a piece,
/// local time and instants step together, so the grid's local times map to instants one to one.
/// A fold is two pieces (its hour is stepped through once in each), a gap is between two pieces
/// (none of its local times is reached).
fn window_candidates(
    window: Interval,
    tz: &TimeZone,
    transitions: &[Timestamp],
    wanted: Wanted,
    out: &mut Vec<Slot>,
) {
    let Ok(last_start) = window.end.checked_sub(wanted.duration) else {
        return;
    };
    let mut from = window.start;
    let mut next = transitions.partition_point(|at| *at <= from);
    loop {
        let utc_offset = tz.to_offset(from);
        let until = transitions
            .get(next)
            .copied()
            .filter(|at| *at < window.end)
            .unwrap_or(window.end);
        let Some(mut local) = grid_at_or_after(utc_offset.to_datetime(from), wanted.step) else {
            return;
        };
        loop {
            let Ok(start) = utc_offset.to_timestamp(local) else {
                return;
            };
            if start >= until {
                break;
            }
            if start > last_start || start >= wanted.range.end {
                return;
            }
            out.push(Slot {
                start,
                end: start + wanted.duration,
                local_start: local,
                utc_offset,
            });
            match grid_after(local, wanted.step) {
                Some(after) => local = after,
                None => return,
            }
        }
        if until >= window.end {
            return;
        }
        from = until;
        next += 1;
    }
}

/// The instants of `tz`'s transitions from a day before the first window to a day after the
/// last one (a handful for a month; none for a fixed offset).
fn transitions_near(tz: &TimeZone, windows: &[Interval]) -> Vec<Timestamp> {
    let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
        return Vec::new();
    };
    let day = SignedDuration::from_hours(24);
    let from = first.start.checked_sub(day).unwrap_or(Timestamp::MIN);
    let to = last.end.checked_add(day).unwrap_or(Timestamp::MAX);
    tz.following(from)
        .map(|transition| transition.timestamp())
        .take_while(|at| *at <= to)
        .collect()
}

/// The first local time of the step grid at or after `local`: the grid restarts at every local
/// hour (`HH:00`, `HH:00 + step`, … while still in that hour). `None` past the calendar's end.
fn grid_at_or_after(local: DateTime, step: SignedDuration) -> Option<DateTime> {
    let hour = hour_of(local)?;
    let into_hour = local.duration_since(hour);
    let steps = into_hour.as_nanos() / step.as_nanos().max(1);
    let candidate = hour
        .checked_add(SignedDuration::from_nanos_i128(steps * step.as_nanos()))
        .ok()?;
    if candidate < local {
        grid_after(candidate, step)
    } else {
        Some(candidate)
    }
}

/// The grid's local time after `grid` (itself on the grid): `step` later, or the next hour
/// when that comes first.
fn grid_after(grid: DateTime, step: SignedDuration) -> Option<DateTime> {
    let next_hour = hour_of(grid)?
        .checked_add(SignedDuration::from_hours(1))
        .ok()?;
    let stepped = grid.checked_add(step).ok()?;
    Some(stepped.min(next_hour))
}

/// The start of the local hour of `local`.
fn hour_of(local: DateTime) -> Option<DateTime> {
    Some(
        local
            .date()
            .to_datetime(Time::new(local.hour(), 0, 0, 0).ok()?),
    )
}

/// Open windows of `calendar` on every local date around `span`, unclipped.
fn open_windows_around(calendar: &PractitionerCalendar, span: Interval) -> Vec<Interval> {
    let closed = merge(
        applicable(calendar)
            .filter(|exception| removes_time(exception.kind))
            .flat_map(|exception| occurrences(exception, span))
            .collect(),
    );
    subtract(&available_windows(calendar, span), &closed)
}

/// Weekly ranges and extra hours on every local date around `span`, merged, unclipped.
fn available_windows(calendar: &PractitionerCalendar, span: Interval) -> Vec<Interval> {
    let availability = &calendar.availability;
    let tz = availability.zone.tz();
    let (first, last) = dates_around(tz, span);
    let mut windows = Vec::new();
    for date in dates(first, last) {
        let weekday = date.weekday();
        for range in availability
            .ranges
            .iter()
            .filter(|range| range.day == weekday)
        {
            windows.extend(local_window(tz, date, range.start, range.end));
        }
    }
    for exception in applicable(calendar).filter(|e| e.kind == ExceptionKind::ExtraHours) {
        // Extra hours need a window: `occurrences` would read `None` as the whole day.
        if exception.window.is_some() {
            windows.extend(occurrences(exception, span));
        }
    }
    merge(windows)
}

/// The exceptions that apply to this calendar's practitioner: their own and org-wide ones.
fn applicable(calendar: &PractitionerCalendar) -> impl Iterator<Item = &AvailabilityException> {
    calendar.exceptions.iter().filter(|exception| {
        exception
            .practitioner
            .as_ref()
            .is_none_or(|practitioner| *practitioner == calendar.subject)
    })
}

/// True for the kinds that take time out of availability.
fn removes_time(kind: ExceptionKind) -> bool {
    matches!(kind, ExceptionKind::Leave | ExceptionKind::Closure)
}

/// The exception's intervals on its local dates around `span` (whole days when no window).
fn occurrences(
    exception: &AvailabilityException,
    span: Interval,
) -> impl Iterator<Item = Interval> {
    let tz = exception.zone.tz();
    let (first, last) = dates_around(tz, span);
    let (start, end) = exception.window.unwrap_or((Time::MIN, Time::MAX));
    dates(
        first.max(exception.start_date),
        last.min(exception.end_date),
    )
    .filter_map(move |date| local_window(tz, date, start, end))
}

/// First and last local dates of `tz` that can hold part of `span`, one date of margin each side.
fn dates_around(tz: &TimeZone, span: Interval) -> (Date, Date) {
    let first = tz.to_datetime(span.start).date();
    let last = tz.to_datetime(span.end).date();
    (
        first.yesterday().unwrap_or(first),
        last.tomorrow().unwrap_or(last),
    )
}

/// The dates `first..=last` (none when `last < first`).
fn dates(first: Date, last: Date) -> impl Iterator<Item = Date> {
    std::iter::successors((first <= last).then_some(first), move |date| {
        date.tomorrow().ok().filter(|next| *next <= last)
    })
}

/// A daily local window `start..end` on `date` as instants; an end of [`Time::MAX`] is the next
/// midnight. `None` when empty (inverted, or squeezed to nothing by a gap).
fn local_window(tz: &TimeZone, date: Date, start: Time, end: Time) -> Option<Interval> {
    let start = instant(tz, date.to_datetime(start))?;
    let end_local = if end == Time::MAX {
        date.tomorrow().ok()?.to_datetime(Time::MIN)
    } else {
        date.to_datetime(end)
    };
    let end = instant(tz, end_local)?;
    (start < end).then_some(Interval { start, end })
}

/// The instant of a local time (the contract's rule for `WeeklyRange`): a local time that does
/// not exist (in a gap) is the first instant after it, i.e. the transition itself; a local time
/// that exists twice (in a fold) is its first occurrence.
fn instant(tz: &TimeZone, local: DateTime) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(local);
    match ambiguous.offset() {
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the offset after the gap, `local` lands before the transition (by less
            // than the gap's length), so the next transition is the one that skipped it.
            let before_the_jump = after.to_timestamp(local).ok()?;
            tz.following(before_the_jump)
                .next()
                .map(|transition| transition.timestamp())
        }
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
            ambiguous.compatible().ok()
        }
    }
}

/// Sorts and merges intervals (overlapping or touching ones become one).
fn merge(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.sort_unstable();
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for interval in intervals {
        match merged.last_mut() {
            Some(last) if interval.start <= last.end => last.end = last.end.max(interval.end),
            _ => merged.push(interval),
        }
    }
    merged
}

/// `windows − holes`, both sorted and merged.
fn subtract(windows: &[Interval], holes: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::with_capacity(windows.len());
    let mut first_hole = 0;
    for window in windows {
        while holes
            .get(first_hole)
            .is_some_and(|hole| hole.end <= window.start)
        {
            first_hole += 1;
        }
        let mut start = window.start;
        for hole in holes[first_hole..]
            .iter()
            .take_while(|hole| hole.start < window.end)
        {
            if start < hole.start {
                out.push(Interval {
                    start,
                    end: hole.start,
                });
            }
            start = start.max(hole.end);
        }
        if start < window.end {
            out.push(Interval {
                start,
                end: window.end,
            });
        }
    }
    out
}

/// `a ∩ b`, both sorted and merged.
fn intersect(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        let start = x.start.max(y.start);
        let end = x.end.min(y.end);
        if start < end {
            out.push(Interval { start, end });
        }
        if x.end < y.end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// `window ∩ range`, if not empty.
fn clip(window: Interval, range: Interval) -> Option<Interval> {
    let start = window.start.max(range.start);
    let end = window.end.min(range.end);
    (start < end).then_some(Interval { start, end })
}

/// "on 2026-03-30 from 09:00 to 09:30 (Europe/Paris)", or "from 2026-03-30 23:00 to
/// 2026-03-31 01:00 (Europe/Paris)" across dates; a time in a folded hour shows its offset.
fn describe_span(zone: &Zone, time: Interval) -> String {
    let tz = zone.tz();
    let start = tz.to_datetime(time.start);
    let end = tz.to_datetime(time.end);
    let same_day = start.date() == end.date();
    let ends_at_midnight =
        end.time() == Time::MIN && start.date().tomorrow().is_ok_and(|next| next == end.date());
    let mut text = String::new();
    if same_day || ends_at_midnight {
        let end_clock = if same_day {
            clock(tz, time.end)
        } else {
            "24:00".to_owned()
        };
        let _ = write!(
            text,
            "on {} from {} to {end_clock}",
            start.date(),
            clock(tz, time.start)
        );
    } else {
        let _ = write!(
            text,
            "from {} {} to {} {}",
            start.date(),
            clock(tz, time.start),
            end.date(),
            clock(tz, time.end)
        );
    }
    let _ = write!(text, " ({})", zone.name());
    text
}

/// "2026-03-30 09:00 (Europe/Paris)".
fn describe_instant(zone: &Zone, instant: Timestamp) -> String {
    let local = zone.tz().to_datetime(instant);
    format!(
        "{} {} ({})",
        local.date(),
        clock(zone.tz(), instant),
        zone.name()
    )
}

/// `HH:MM` local time of `instant`, with its offset when that local time exists twice.
fn clock(tz: &TimeZone, instant: Timestamp) -> String {
    let local = tz.to_datetime(instant);
    if tz.to_ambiguous_timestamp(local).is_ambiguous() {
        format!("{} (UTC{})", hhmm(local.time()), tz.to_offset(instant))
    } else {
        hhmm(local.time())
    }
}

/// "10 minutes", "1 minute", "45 seconds" (rounded up to minutes from one minute on).
fn describe_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs().max(0).unsigned_abs();
    if seconds < 60 {
        return format!("{seconds} second{}", if seconds == 1 { "" } else { "s" });
    }
    let minutes = seconds.div_ceil(60);
    format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
}

/// The message of a leave or closure in the way; `hull` is its part overlapping the request.
fn describe_exception(
    who: &str,
    zone: &Zone,
    exception: &AvailabilityException,
    hull: Interval,
) -> String {
    let when = if exception.window.is_some() {
        describe_span(zone, hull)
    } else if exception.start_date == exception.end_date {
        format!("on {} ({})", exception.start_date, exception.zone.name())
    } else {
        format!(
            "from {} to {} ({})",
            exception.start_date,
            exception.end_date,
            exception.zone.name()
        )
    };
    let id = &exception.id;
    match (exception.kind, &exception.practitioner) {
        (ExceptionKind::Closure, None) => {
            format!("{who} cannot be booked: the centre is closed {when} (closure {id})")
        }
        (ExceptionKind::Closure, Some(_)) => {
            format!("{who}'s practice is closed {when} (closure {id})")
        }
        _ => format!("{who} is on leave {when} (leave {id})"),
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::Weekday::{
        self, Friday, Monday, Saturday, Sunday, Thursday, Tuesday, Wednesday,
    };

    use super::*;
    use crate::domain::{WeeklyRange, parse_date, parse_hhmm};

    const WEEK: [Weekday; 7] = [
        Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday,
    ];
    const WORKDAYS: [Weekday; 5] = [Monday, Tuesday, Wednesday, Thursday, Friday];

    /// Weekly ranges as written in the tables: (day, "HH:MM", "HH:MM").
    type Ranges = Vec<(Weekday, &'static str, &'static str)>;
    /// Conflicts as written in the tables: (kind, appointment or exception id).
    type Kinds = Vec<(ConflictKind, Option<&'static str>)>;
    /// A local interval as written in the tables: ("2026-03-30 09:00", "2026-03-30 09:30").
    type LocalSpan = (&'static str, &'static str);
    /// The clock of a conflict check: (now, not before).
    type Clock = (Timestamp, Timestamp);

    fn zone(name: &str) -> Zone {
        Zone::parse("zone", name).expect("test zones exist")
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().expect("test instants are valid")
    }

    /// `2026-03-30 09:00` in `zone` (compatible disambiguation).
    fn local(zone: &Zone, text: &str) -> Timestamp {
        let datetime: DateTime = text.parse().expect("test local times are valid");
        instant(zone.tz(), datetime).expect("test local times are in range")
    }

    fn interval(start: Timestamp, end: Timestamp) -> Interval {
        Interval::new(start, end).expect("test intervals are not empty")
    }

    /// A local interval `2026-03-30 09:00` .. `2026-03-30 09:30`.
    fn local_interval(zone: &Zone, start: &str, end: &str) -> Interval {
        interval(local(zone, start), local(zone, end))
    }

    /// The whole local days `first..=last`.
    fn days(zone: &Zone, first: &str, last: &str) -> Interval {
        let last = parse_date("last", last).expect("test dates are valid");
        let after = last.tomorrow().expect("test dates are not the last one");
        local_interval(zone, &format!("{first} 00:00"), &format!("{after} 00:00"))
    }

    fn hm(text: &str) -> Time {
        parse_hhmm("time", text).expect("test times are valid")
    }

    fn weekly(zone: &Zone, ranges: &[(Weekday, &str, &str)], buffer: i64) -> WeeklyAvailability {
        let ranges = ranges
            .iter()
            .map(|&(day, start, end)| WeeklyRange {
                day,
                start: hm(start),
                end: hm(end),
            })
            .collect();
        WeeklyAvailability::new(zone.clone(), ranges, buffer).expect("test availability is valid")
    }

    fn on(days: &[Weekday], start: &'static str, end: &'static str) -> Ranges {
        days.iter().map(|&day| (day, start, end)).collect()
    }

    fn subject(name: &str) -> Subject {
        Subject::parse("subject", name).expect("test subjects are valid")
    }

    fn calendar(name: &str, availability: WeeklyAvailability) -> PractitionerCalendar {
        PractitionerCalendar {
            subject: subject(name),
            availability,
            exceptions: Vec::new(),
            busy: Vec::new(),
        }
    }

    fn exception(
        id: &str,
        kind: ExceptionKind,
        practitioner: Option<&str>,
        (start_date, end_date): (&str, &str),
        window: Option<(&str, &str)>,
        zone: &Zone,
    ) -> AvailabilityException {
        AvailabilityException {
            id: id.to_owned(),
            kind,
            practitioner: practitioner.map(subject),
            start_date: parse_date("start", start_date).expect("test dates are valid"),
            end_date: parse_date("end", end_date).expect("test dates are valid"),
            window: window.map(|(start, end)| (hm(start), hm(end))),
            zone: zone.clone(),
        }
    }

    fn busy(zone: &Zone, id: &str, start: &str, end: &str, is_hold: bool) -> Busy {
        Busy {
            time: local_interval(zone, start, end),
            id: id.to_owned(),
            is_hold,
        }
    }

    fn mins(minutes: i64) -> SignedDuration {
        SignedDuration::from_mins(minutes)
    }

    /// Windows as local text: `2026-03-30 09:00-12:00`, or with both dates across midnight.
    fn shown_windows(zone: &Zone, windows: &[Interval]) -> Vec<String> {
        let show = |window: &Interval| {
            let start = zone.tz().to_datetime(window.start);
            let end = zone.tz().to_datetime(window.end);
            let (from, to) = (hhmm(start.time()), hhmm(end.time()));
            if start.date() == end.date() {
                format!("{} {from}-{to}", start.date())
            } else {
                format!("{} {from}-{} {to}", start.date(), end.date())
            }
        };
        windows.iter().map(show).collect()
    }

    /// Slot starts as local `HH:MM`.
    fn shown_starts(slots: &[Slot]) -> Vec<String> {
        slots
            .iter()
            .map(|slot| hhmm(slot.local_start.time()))
            .collect()
    }

    /// Local `HH:MM` every `step` minutes from `first` to `last` inclusive.
    fn every(first: &str, last: &str, step: i64) -> Vec<String> {
        let (first, last) = (hm(first), hm(last));
        let next = |time: &Time| {
            time.checked_add(mins(step))
                .ok()
                .filter(|next| *next <= last)
        };
        std::iter::successors(Some(first), next).map(hhmm).collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn a_weekly_range_keeps_its_local_time_on_both_sides_of_each_dst_change_and_far_from_utc() {
        // (case, zone, local date, expected start of 09:00 in UTC, expected UTC offset in hours)
        #[rustfmt::skip]
        let cases = [
            ("Paris, Saturday before spring forward", "Europe/Paris", "2026-03-28", "2026-03-28T08:00:00Z", 1),
            ("Paris, the spring-forward Sunday", "Europe/Paris", "2026-03-29", "2026-03-29T07:00:00Z", 2),
            ("Paris, Monday after spring forward", "Europe/Paris", "2026-03-30", "2026-03-30T07:00:00Z", 2),
            ("Paris, Saturday before fall back", "Europe/Paris", "2026-10-24", "2026-10-24T07:00:00Z", 2),
            ("Paris, the fall-back Sunday", "Europe/Paris", "2026-10-25", "2026-10-25T08:00:00Z", 1),
            ("Paris, Monday after fall back", "Europe/Paris", "2026-10-26", "2026-10-26T08:00:00Z", 1),
            ("Los Angeles, day before its spring forward", "America/Los_Angeles", "2026-03-07", "2026-03-07T17:00:00Z", -8),
            ("Los Angeles, its spring-forward Sunday", "America/Los_Angeles", "2026-03-08", "2026-03-08T16:00:00Z", -7),
            ("Los Angeles, day after its spring forward", "America/Los_Angeles", "2026-03-09", "2026-03-09T16:00:00Z", -7),
            ("Los Angeles, day before its fall back", "America/Los_Angeles", "2026-10-31", "2026-10-31T16:00:00Z", -7),
            ("Los Angeles, its fall-back Sunday", "America/Los_Angeles", "2026-11-01", "2026-11-01T17:00:00Z", -8),
            ("Los Angeles, day after its fall back", "America/Los_Angeles", "2026-11-02", "2026-11-02T17:00:00Z", -8),
            ("Noumea (+11, no DST): the previous UTC day", "Pacific/Noumea", "2026-03-30", "2026-03-29T22:00:00Z", 11),
            ("Noumea in July: the same offset", "Pacific/Noumea", "2026-07-01", "2026-06-30T22:00:00Z", 11),
            ("Kiritimati (+14), west of the date line", "Pacific/Kiritimati", "2026-03-30", "2026-03-29T19:00:00Z", 14),
            ("Pago Pago (-11), east of the date line", "Pacific/Pago_Pago", "2026-03-30", "2026-03-30T20:00:00Z", -11),
        ];
        for (case, name, date, expected, offset_hours) in cases {
            let zone = zone(name);
            let calendar = calendar("dr-martin", weekly(&zone, &on(&WEEK, "09:00", "09:30"), 0));
            let range = days(&zone, date, date);
            let slots = free_slots(&calendar, range, mins(30), mins(15), Timestamp::MIN);
            assert_eq!(
                slots.len(),
                1,
                "{case}: one 30-minute slot in 09:00-09:30: {slots:?}"
            );
            let slot = slots[0];
            assert_eq!(
                slot.start,
                utc(expected),
                "{case}: 09:00 local is {expected}"
            );
            assert_eq!(
                slot.end,
                utc(expected) + mins(30),
                "{case}: 30 real minutes"
            );
            assert_eq!(
                slot.local_start.to_string(),
                format!("{date}T09:00:00"),
                "{case}"
            );
            assert_eq!(
                slot.utc_offset,
                Offset::constant(offset_hours),
                "{case}: offset"
            );
        }
    }

    #[test]
    fn a_range_across_the_gap_has_fewer_real_hours_and_one_across_the_fold_has_more() {
        // Sunday 01:00-04:00 local: (case, zone, date, expected UTC start and end, real hours)
        #[rustfmt::skip]
        let cases = [
            ("Paris spring forward", "Europe/Paris", "2026-03-29", ("2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z"), 2),
            ("Paris fall back", "Europe/Paris", "2026-10-25", ("2026-10-24T23:00:00Z", "2026-10-25T03:00:00Z"), 4),
            ("Paris, an ordinary Sunday", "Europe/Paris", "2026-04-05", ("2026-04-04T23:00:00Z", "2026-04-05T02:00:00Z"), 3),
            ("Los Angeles spring forward", "America/Los_Angeles", "2026-03-08", ("2026-03-08T09:00:00Z", "2026-03-08T11:00:00Z"), 2),
            // 01:00 is itself folded in Los Angeles on 2026-11-01: the earlier one (PDT) counts.
            ("Los Angeles fall back", "America/Los_Angeles", "2026-11-01", ("2026-11-01T08:00:00Z", "2026-11-01T12:00:00Z"), 4),
        ];
        for (case, name, date, (start, end), hours) in cases {
            let zone = zone(name);
            let calendar = calendar("dr-martin", weekly(&zone, &[(Sunday, "01:00", "04:00")], 0));
            let windows = open_windows(&calendar, days(&zone, date, date));
            assert_eq!(
                windows,
                vec![interval(utc(start), utc(end))],
                "{case}: the window"
            );
            let real = SignedDuration::from_hours(hours);
            assert_eq!(windows[0].duration(), real, "{case}: real hours");
        }
    }

    #[test]
    fn starts_step_through_local_time_skipping_the_gap_and_offering_the_folded_hour_twice() {
        let paris = zone("Europe/Paris");
        let calendar = calendar(
            "dr-martin",
            weekly(&paris, &[(Sunday, "01:00", "04:00")], 0),
        );
        // (case, date, duration, step, expected local starts with their offsets)
        #[rustfmt::skip]
        let cases: [(&str, &str, i64, i64, &[&str]); 3] = [
            (
                "spring forward: 02:00-02:59 does not exist, 2 real hours of 15-minute slots",
                "2026-03-29", 15, 15,
                &["01:00+01", "01:15+01", "01:30+01", "01:45+01", "03:00+02", "03:15+02", "03:30+02", "03:45+02"],
            ),
            (
                "spring forward: a one-hour slot from 01:30 ends at 03:30, one real hour later",
                "2026-03-29", 60, 30,
                &["01:00+01", "01:30+01", "03:00+02"],
            ),
            (
                "fall back: 02:00-02:59 happens twice, 4 real hours of 15-minute slots",
                "2026-10-25", 15, 15,
                &[
                    "01:00+02", "01:15+02", "01:30+02", "01:45+02", "02:00+02", "02:15+02", "02:30+02", "02:45+02",
                    "02:00+01", "02:15+01", "02:30+01", "02:45+01", "03:00+01", "03:15+01", "03:30+01", "03:45+01",
                ],
            ),
        ];
        for (case, date, duration, step, expected) in cases {
            let range = days(&paris, date, date);
            let slots = free_slots(&calendar, range, mins(duration), mins(step), Timestamp::MIN);
            let shown: Vec<String> = slots
                .iter()
                .map(|slot| format!("{}{}", hhmm(slot.local_start.time()), slot.utc_offset))
                .collect();
            assert_eq!(shown, strings(expected), "{case}");
            let sorted = slots.windows(2).all(|pair| pair[0].start < pair[1].start);
            assert!(sorted, "{case}: sorted by instant, no duplicate");
            let real = slots
                .iter()
                .all(|slot| slot.end.duration_since(slot.start) == mins(duration));
            assert!(real, "{case}: durations are real time");
        }
    }

    #[test]
    fn a_local_time_in_the_gap_is_the_first_instant_after_it_and_a_folded_one_the_earlier() {
        let paris = zone("Europe/Paris");
        // (case, weekly Sunday range, date, expected UTC window)
        #[rustfmt::skip]
        let cases = [
            ("02:30 in the gap is the first instant after it, 03:00 CEST", ("02:30", "05:00"), "2026-03-29", ("2026-03-29T01:00:00Z", "2026-03-29T03:00:00Z")),
            ("an end in the gap is 03:00 CEST too", ("01:00", "02:30"), "2026-03-29", ("2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z")),
            ("02:30 in the fold is the first one, CEST", ("02:30", "05:00"), "2026-10-25", ("2026-10-25T00:30:00Z", "2026-10-25T04:00:00Z")),
            ("an end in the fold is the first one too", ("01:00", "02:30"), "2026-10-25", ("2026-10-24T23:00:00Z", "2026-10-25T00:30:00Z")),
        ];
        for (case, (start, end), date, (expected_start, expected_end)) in cases {
            let calendar = calendar("dr-martin", weekly(&paris, &[(Sunday, start, end)], 0));
            let windows = open_windows(&calendar, days(&paris, date, date));
            let expected = vec![interval(utc(expected_start), utc(expected_end))];
            assert_eq!(windows, expected, "{case}");
        }
        let squeezed = calendar(
            "dr-martin",
            weekly(&paris, &[(Sunday, "02:15", "03:10")], 0),
        );
        assert_eq!(
            shown_windows(
                &paris,
                &open_windows(&squeezed, days(&paris, "2026-03-29", "2026-03-29"))
            ),
            strings(&["2026-03-29 03:00-03:10"]),
            "02:15-03:10 on spring forward is 03:00-03:10 CEST"
        );
        let swallowed = calendar(
            "dr-martin",
            weekly(&paris, &[(Sunday, "02:10", "02:50")], 0),
        );
        assert_eq!(
            open_windows(&swallowed, days(&paris, "2026-03-29", "2026-03-29")),
            vec![],
            "02:10-02:50 on spring forward does not exist at all: empty, never inverted"
        );
    }

    #[test]
    fn an_end_of_24_00_is_midnight_at_the_end_of_the_day() {
        let paris = zone("Europe/Paris");
        // (case, weekly ranges, local days queried, expected windows)
        #[rustfmt::skip]
        let cases: [(&str, Ranges, LocalSpan, &[&str]); 3] = [
            (
                "Monday 20:00-24:00 ends at Tuesday 00:00",
                vec![(Monday, "20:00", "24:00")],
                ("2026-03-30", "2026-03-31"),
                &["2026-03-30 20:00-2026-03-31 00:00"],
            ),
            (
                "24:00 and the next day's 00:00 make one window",
                vec![(Monday, "20:00", "24:00"), (Tuesday, "00:00", "02:00")],
                ("2026-03-30", "2026-03-31"),
                &["2026-03-30 20:00-2026-03-31 02:00"],
            ),
            (
                "24:00 on the eve of spring forward",
                vec![(Saturday, "22:00", "24:00")],
                ("2026-03-28", "2026-03-29"),
                &["2026-03-28 22:00-2026-03-29 00:00"],
            ),
        ];
        for (case, ranges, (first, last), expected) in cases {
            let calendar = calendar("dr-martin", weekly(&paris, &ranges, 0));
            let windows = open_windows(&calendar, days(&paris, first, last));
            assert_eq!(shown_windows(&paris, &windows), strings(expected), "{case}");
        }

        let eve = calendar(
            "dr-martin",
            weekly(&paris, &[(Saturday, "22:00", "24:00")], 0),
        );
        assert_eq!(
            open_windows(&eve, days(&paris, "2026-03-28", "2026-03-29"))[0].end,
            utc("2026-03-28T23:00:00Z"),
            "midnight at the end of 2026-03-28 is still CET"
        );
        let ranges = [(Monday, "20:00", "24:00"), (Tuesday, "00:00", "02:00")];
        let night = calendar("dr-martin", weekly(&paris, &ranges, 0));
        let range = days(&paris, "2026-03-30", "2026-03-30");
        let slots = free_slots(&night, range, mins(30), mins(15), Timestamp::MIN);
        assert!(
            slots
                .iter()
                .any(|slot| slot.local_start.to_string() == "2026-03-30T23:45:00"),
            "a slot may cross midnight inside one merged window"
        );
    }

    #[test]
    fn windows_are_found_across_the_date_line_from_a_utc_range() {
        // (case, zone, weekly range, UTC range queried, expected UTC window, clipped to the range)
        #[rustfmt::skip]
        let cases = [
            (
                "Kiritimati (+14): Monday morning is Sunday in UTC",
                "Pacific/Kiritimati", (Monday, "08:00", "09:00"),
                ("2026-03-29T12:00:00Z", "2026-03-29T23:00:00Z"),
                ("2026-03-29T18:00:00Z", "2026-03-29T19:00:00Z"),
            ),
            (
                "Pago Pago (-11): Monday evening is Tuesday in UTC",
                "Pacific/Pago_Pago", (Monday, "20:00", "21:00"),
                ("2026-03-31T00:00:00Z", "2026-03-31T12:00:00Z"),
                ("2026-03-31T07:00:00Z", "2026-03-31T08:00:00Z"),
            ),
            (
                "Noumea (+11): Monday 09:00-12:00 straddles UTC midnight, clipped to the range",
                "Pacific/Noumea", (Monday, "09:00", "12:00"),
                ("2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z"),
                ("2026-03-29T22:00:00Z", "2026-03-30T00:00:00Z"),
            ),
        ];
        for (case, name, range, (from, to), (start, end)) in cases {
            let zone = zone(name);
            let calendar = calendar("dr-martin", weekly(&zone, &[range], 0));
            let windows = open_windows(&calendar, interval(utc(from), utc(to)));
            assert_eq!(windows, vec![interval(utc(start), utc(end))], "{case}");
        }
    }

    #[test]
    fn open_windows_are_clipped_to_the_range_sorted_and_merged() {
        let paris = zone("Europe/Paris");
        let ranges = [
            (Monday, "14:00", "16:00"),
            (Monday, "09:00", "12:00"),
            (Monday, "12:00", "13:00"),
        ];
        let calendar = calendar("dr-martin", weekly(&paris, &ranges, 0));
        // (case, local range, expected windows)
        #[rustfmt::skip]
        let cases: [(&str, (&str, &str), &[&str]); 3] = [
            ("touching ranges merge", ("2026-03-30 00:00", "2026-03-31 00:00"), &["2026-03-30 09:00-13:00", "2026-03-30 14:00-16:00"]),
            ("clipped at both ends", ("2026-03-30 10:00", "2026-03-30 15:00"), &["2026-03-30 10:00-13:00", "2026-03-30 14:00-15:00"]),
            ("nothing between the windows", ("2026-03-30 13:00", "2026-03-30 14:00"), &[]),
        ];
        for (case, (from, to), expected) in cases {
            let windows = open_windows(&calendar, local_interval(&paris, from, to));
            assert_eq!(shown_windows(&paris, &windows), strings(expected), "{case}");
        }
    }

    #[test]
    fn leave_and_closures_remove_whole_days_or_their_window_and_extra_hours_add_time() {
        use ExceptionKind::{Closure, ExtraHours, Leave};
        let paris = zone("Europe/Paris");
        let (utc_zone, noumea) = (zone("UTC"), zone("Pacific/Noumea"));
        let me = Some("dr-martin");
        let [mon, tue, wed, thu, fri] = [
            "2026-03-30 09:00-12:00",
            "2026-03-31 09:00-12:00",
            "2026-04-01 09:00-12:00",
            "2026-04-02 09:00-12:00",
            "2026-04-03 09:00-12:00",
        ];
        let week = vec![mon, tue, wed, thu, fri];
        // (case, exceptions, expected windows from Monday 2026-03-30 to Sunday 2026-04-05)
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<AvailabilityException>, Vec<&str>)> = vec![
            ("no exception: the weekly hours", vec![], week.clone()),
            (
                "leave without a window removes whole days",
                vec![exception("l1", Leave, me, ("2026-03-31", "2026-04-01"), None, &paris)],
                vec![mon, thu, fri],
            ),
            (
                "a closure with a window removes that window on each date",
                vec![exception("c1", Closure, me, ("2026-03-30", "2026-03-31"), Some(("10:00", "11:00")), &paris)],
                vec!["2026-03-30 09:00-10:00", "2026-03-30 11:00-12:00", "2026-03-31 09:00-10:00", "2026-03-31 11:00-12:00", wed, thu, fri],
            ),
            (
                "extra hours add their window",
                vec![exception("x1", ExtraHours, me, ("2026-04-04", "2026-04-04"), Some(("09:00", "12:00")), &paris)],
                vec![mon, tue, wed, thu, fri, "2026-04-04 09:00-12:00"],
            ),
            (
                "extra hours touching weekly hours merge with them",
                vec![exception("x1", ExtraHours, me, ("2026-03-30", "2026-03-30"), Some(("12:00", "13:00")), &paris)],
                vec!["2026-03-30 09:00-13:00", tue, wed, thu, fri],
            ),
            (
                "an org-wide closure applies",
                vec![exception("c1", Closure, None, ("2026-04-03", "2026-04-03"), None, &paris)],
                vec![mon, tue, wed, thu],
            ),
            (
                "another practitioner's leave does not",
                vec![exception("l1", Leave, Some("dr-other"), ("2026-03-30", "2026-04-05"), None, &paris)],
                week.clone(),
            ),
            (
                "leave wins over extra hours",
                vec![
                    exception("x1", ExtraHours, me, ("2026-04-04", "2026-04-04"), Some(("09:00", "12:00")), &paris),
                    exception("l1", Leave, me, ("2026-04-04", "2026-04-04"), None, &paris),
                ],
                week.clone(),
            ),
            (
                "extra hours without a window are ignored",
                vec![exception("x1", ExtraHours, me, ("2026-04-04", "2026-04-04"), None, &paris)],
                week.clone(),
            ),
            (
                "an inverted window is ignored",
                vec![exception("l1", Leave, me, ("2026-03-30", "2026-03-30"), Some(("11:00", "10:00")), &paris)],
                week.clone(),
            ),
            (
                "a window may end at 24:00",
                vec![exception("l1", Leave, me, ("2026-03-30", "2026-03-30"), Some(("11:00", "24:00")), &paris)],
                vec!["2026-03-30 09:00-11:00", tue, wed, thu, fri],
            ),
            (
                "an exception is laid out in its own zone: 08:00-09:00 UTC is 10:00-11:00 in Paris",
                vec![exception("c1", Closure, None, ("2026-03-31", "2026-03-31"), Some(("08:00", "09:00")), &utc_zone)],
                vec![mon, "2026-03-31 09:00-10:00", "2026-03-31 11:00-12:00", wed, thu, fri],
            ),
            (
                "a whole day in Noumea is 15:00 to 15:00 the next day in Paris",
                vec![exception("c1", Closure, None, ("2026-03-31", "2026-03-31"), None, &noumea)],
                vec![mon, wed, thu, fri],
            ),
            (
                "leave starting before the range only removes the days in it",
                vec![exception("l1", Leave, me, ("2026-03-01", "2026-03-30"), None, &paris)],
                vec![tue, wed, thu, fri],
            ),
        ];
        for (case, exceptions, expected) in cases {
            let weekly = weekly(&paris, &on(&WORKDAYS, "09:00", "12:00"), 0);
            let calendar = PractitionerCalendar {
                exceptions,
                ..calendar("dr-martin", weekly)
            };
            let windows = open_windows(&calendar, days(&paris, "2026-03-30", "2026-04-05"));
            assert_eq!(
                shown_windows(&paris, &windows),
                strings(&expected),
                "{case}"
            );
        }
    }

    #[test]
    fn starts_are_aligned_on_the_local_hour_and_leave_room_for_the_duration() {
        let paris = zone("Europe/Paris");
        let ranges = [(Monday, "09:00", "10:00"), (Monday, "10:10", "11:00")];
        let calendar = calendar("dr-martin", weekly(&paris, &ranges, 0));
        // (case, duration, step, expected starts)
        #[rustfmt::skip]
        let cases: [(&str, i64, i64, &[&str]); 4] = [
            ("15-minute step, 30-minute slots", 30, 15, &["09:00", "09:15", "09:30", "10:15", "10:30"]),
            ("a step longer than the slot", 15, 20, &["09:00", "09:20", "09:40", "10:20", "10:40"]),
            ("a slot longer than any window", 70, 10, &[]),
            ("a slot exactly one window long", 60, 60, &["09:00"]),
        ];
        for (case, duration, step, expected) in cases {
            let range = days(&paris, "2026-03-30", "2026-03-30");
            let slots = free_slots(&calendar, range, mins(duration), mins(step), Timestamp::MIN);
            assert_eq!(shown_starts(&slots), strings(expected), "{case}");
        }
    }

    #[test]
    fn a_buffer_blocks_slots_overlapping_the_time_around_appointments_and_holds() {
        let paris = zone("Europe/Paris");
        let on_monday = |id: &str, start: &str, end: &str, is_hold: bool| {
            busy(
                &paris,
                id,
                &format!("2026-03-30 {start}"),
                &format!("2026-03-30 {end}"),
                is_hold,
            )
        };
        let appointment = |id, start, end| on_monday(id, start, end, false);
        let hold = |id, start, end| on_monday(id, start, end, true);
        let around_10 = [every("09:00", "09:20", 10), every("10:40", "11:30", 10)].concat();
        let around_10_to_11 = [every("09:00", "09:20", 10), every("11:30", "11:30", 10)].concat();
        // (case, buffer minutes, busy, expected 30-minute starts every 10 minutes in 09:00-12:00)
        #[rustfmt::skip]
        let cases: Vec<(&str, i64, Vec<Busy>, Vec<String>)> = vec![
            ("nothing booked", 10, vec![], every("09:00", "11:30", 10)),
            (
                "10:00-10:30 with a 10-minute buffer blocks 09:50-10:40",
                10, vec![appointment("a1", "10:00", "10:30")], around_10.clone(),
            ),
            (
                "a hold is buffered like an appointment",
                10, vec![hold("h1", "10:00", "10:30")], around_10,
            ),
            (
                "without buffer only the appointment itself",
                0, vec![appointment("a1", "10:00", "10:30")],
                [every("09:00", "09:30", 10), every("10:30", "11:30", 10)].concat(),
            ),
            (
                "touching buffers block one stretch, 09:50-11:30",
                10, vec![appointment("a1", "10:00", "10:30"), hold("h1", "10:50", "11:20")], around_10_to_11.clone(),
            ),
            (
                "busy time in any order",
                10, vec![hold("h1", "10:50", "11:20"), appointment("a1", "10:00", "10:30")], around_10_to_11,
            ),
            (
                "the buffer of an appointment before the window reaches into it",
                10, vec![appointment("a0", "08:00", "08:55")], every("09:10", "11:30", 10),
            ),
            (
                "an appointment on another day changes nothing",
                10, vec![busy(&paris, "a9", "2026-03-31 10:00", "2026-03-31 10:30", false)], every("09:00", "11:30", 10),
            ),
        ];
        for (case, buffer, busy, expected) in cases {
            let weekly = weekly(&paris, &[(Monday, "09:00", "12:00")], buffer);
            let calendar = PractitionerCalendar {
                busy,
                ..calendar("dr-martin", weekly)
            };
            let range = days(&paris, "2026-03-30", "2026-03-30");
            let slots = free_slots(&calendar, range, mins(30), mins(10), Timestamp::MIN);
            assert_eq!(shown_starts(&slots), expected, "{case}");
        }
    }

    #[test]
    fn past_and_minimum_notice_starts_are_not_offered_and_the_range_bounds_the_starts() {
        let paris = zone("Europe/Paris");
        let calendar = calendar(
            "dr-martin",
            weekly(&paris, &[(Monday, "09:00", "12:00")], 0),
        );
        let at = |time: &str| local(&paris, &format!("2026-03-30 {time}"));
        let (midnight, evening, anytime) = (at("00:00"), at("23:59"), Timestamp::MIN);
        // (case, range start, range end, not before, expected starts)
        #[rustfmt::skip]
        let cases: [(&str, Timestamp, Timestamp, Timestamp, &[&str]); 6] = [
            ("no notice", midnight, evening, anytime, &["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]),
            ("not before 10:15", midnight, evening, at("10:15"), &["10:30", "11:00", "11:30"]),
            ("a start exactly at not_before is offered", midnight, evening, at("10:30"), &["10:30", "11:00", "11:30"]),
            ("not before the end of the hours", midnight, evening, at("12:00"), &[]),
            ("the range does not move the alignment", at("10:10"), evening, anytime, &["10:30", "11:00", "11:30"]),
            ("a slot starting in the range may end after it", midnight, at("11:15"), anytime, &["09:00", "09:30", "10:00", "10:30", "11:00"]),
        ];
        for (case, from, to, not_before, expected) in cases {
            let slots = free_slots(
                &calendar,
                interval(from, to),
                mins(30),
                mins(30),
                not_before,
            );
            assert_eq!(shown_starts(&slots), strings(expected), "{case}");
        }
    }

    #[test]
    fn degenerate_durations_and_steps_give_no_slot() {
        let paris = zone("Europe/Paris");
        let calendar = calendar(
            "dr-martin",
            weekly(&paris, &[(Monday, "09:00", "12:00")], 0),
        );
        let range = days(&paris, "2026-03-30", "2026-03-30");
        let cases = [
            ("zero duration", SignedDuration::ZERO, mins(15)),
            ("negative duration", mins(-30), mins(15)),
            ("zero step", mins(30), SignedDuration::ZERO),
            ("negative step", mins(30), mins(-15)),
        ];
        for (case, duration, step) in cases {
            let slots = free_slots(&calendar, range, duration, step, Timestamp::MIN);
            assert_eq!(slots, vec![], "{case}");
        }
        let none = common_slots(&[], range, mins(30), mins(15), Timestamp::MIN);
        assert_eq!(none, vec![], "no calendar, no slot");
    }

    /// The calendar of the conflict tests: Monday-Friday 09:00-12:00 in Paris, 10-minute buffer.
    fn booked_calendar() -> PractitionerCalendar {
        use ExceptionKind::{Closure, ExtraHours, Leave};
        let paris = zone("Europe/Paris");
        let me = Some("dr-martin");
        let weekly = weekly(&paris, &on(&WORKDAYS, "09:00", "12:00"), 10);
        #[rustfmt::skip]
        let calendar = PractitionerCalendar {
            busy: vec![
                busy(&paris, "hold-1", "2026-03-30 11:00", "2026-03-30 11:30", true),
                busy(&paris, "appt-1", "2026-03-30 10:00", "2026-03-30 10:30", false),
            ],
            exceptions: vec![
                exception("leave-1", Leave, me, ("2026-03-31", "2026-03-31"), None, &paris),
                exception("closure-1", Closure, None, ("2026-03-30", "2026-03-30"), Some(("12:00", "13:00")), &paris),
                exception("extra-1", ExtraHours, me, ("2026-04-04", "2026-04-04"), Some(("09:00", "10:00")), &paris),
                exception("leave-other", Leave, Some("dr-other"), ("2026-03-30", "2026-04-05"), None, &paris),
            ],
            ..calendar("dr-martin", weekly)
        };
        calendar
    }

    #[test]
    fn conflicts_lists_every_reason_a_time_cannot_be_booked() {
        use ConflictKind::{
            Buffer, Exception, Held, InThePast, MinimumNotice, OutsideAvailability,
            OverlappingAppointment,
        };
        let paris = zone("Europe/Paris");
        let calendar = booked_calendar();
        let at = |text: &str| local(&paris, text);
        // Unless a case says otherwise, now is 08:00 on Monday and the notice 30 minutes.
        let usual = (at("2026-03-30 08:00"), at("2026-03-30 08:30"));
        // (case, requested local time, (now, not before), expected kinds with ids, in order)
        #[rustfmt::skip]
        let cases: Vec<(&str, LocalSpan, Clock, Kinds)> = vec![
            ("free time", ("2026-03-30 09:00", "2026-03-30 09:30"), usual, vec![]),
            ("overlapping an appointment", ("2026-03-30 10:15", "2026-03-30 10:45"), usual, vec![(OverlappingAppointment, Some("appt-1"))]),
            ("only in the buffer after an appointment", ("2026-03-30 10:30", "2026-03-30 10:50"), usual, vec![(Buffer, Some("appt-1"))]),
            ("only in the buffer before an appointment", ("2026-03-30 09:30", "2026-03-30 09:55"), usual, vec![(Buffer, Some("appt-1"))]),
            ("ending where the buffer starts", ("2026-03-30 09:20", "2026-03-30 09:50"), usual, vec![]),
            ("overlapping a hold", ("2026-03-30 11:00", "2026-03-30 11:30"), usual, vec![(Held, Some("hold-1"))]),
            ("only in the buffer of a hold", ("2026-03-30 11:30", "2026-03-30 12:00"), usual, vec![(Buffer, Some("hold-1"))]),
            ("after the hours", ("2026-03-30 13:00", "2026-03-30 13:30"), usual, vec![(OutsideAvailability, None)]),
            (
                "across the end of the hours into an org-wide closure",
                ("2026-03-30 11:45", "2026-03-30 12:15"), usual,
                vec![(OutsideAvailability, None), (Exception, Some("closure-1"))],
            ),
            ("on leave during the weekly hours", ("2026-03-31 09:00", "2026-03-31 09:30"), usual, vec![(Exception, Some("leave-1"))]),
            ("another practitioner's leave is no conflict", ("2026-04-01 09:00", "2026-04-01 09:30"), usual, vec![]),
            ("inside extra hours", ("2026-04-04 09:00", "2026-04-04 09:30"), usual, vec![]),
            ("past the end of extra hours", ("2026-04-04 09:30", "2026-04-04 10:30"), usual, vec![(OutsideAvailability, None)]),
            ("on a Sunday", ("2026-04-05 09:00", "2026-04-05 09:30"), usual, vec![(OutsideAvailability, None)]),
            (
                "started already",
                ("2026-03-30 09:00", "2026-03-30 09:30"), (at("2026-03-30 09:10"), at("2026-03-30 09:40")),
                vec![(InThePast, None)],
            ),
            (
                "within the minimum notice",
                ("2026-03-30 09:00", "2026-03-30 09:30"), (at("2026-03-30 08:50"), at("2026-03-30 09:20")),
                vec![(MinimumNotice, None)],
            ),
            (
                "a start exactly at not_before",
                ("2026-03-30 09:00", "2026-03-30 09:30"), (at("2026-03-30 08:30"), at("2026-03-30 09:00")),
                vec![],
            ),
            (
                "every reason at once",
                ("2026-03-30 10:15", "2026-03-30 12:15"), (at("2026-03-30 10:30"), at("2026-03-30 11:00")),
                vec![
                    (InThePast, None),
                    (OutsideAvailability, None),
                    (Exception, Some("closure-1")),
                    (OverlappingAppointment, Some("appt-1")),
                    (Held, Some("hold-1")),
                ],
            ),
        ];
        for (case, (start, end), (now, not_before), expected) in cases {
            let found = conflicts(
                &calendar,
                local_interval(&paris, start, end),
                now,
                not_before,
            );
            let kinds: Vec<(ConflictKind, Option<&str>)> = found
                .iter()
                .map(|c| {
                    (
                        c.kind,
                        c.appointment_id.as_deref().or(c.exception_id.as_deref()),
                    )
                })
                .collect();
            assert_eq!(kinds, expected, "{case}: {found:#?}");
            let named = found.iter().all(|c| c.practitioner == "dr-martin");
            assert!(named, "{case}: each conflict names the practitioner");
        }
    }

    #[test]
    fn conflict_messages_name_the_practitioner_and_local_times() {
        let paris = zone("Europe/Paris");
        let mut calendar = booked_calendar();
        calendar.busy.push(Busy {
            // From the second 02:30 of the fall-back night.
            time: interval(utc("2026-10-25T01:30:00Z"), utc("2026-10-25T02:00:00Z")),
            id: "appt-fold".to_owned(),
            is_hold: false,
        });
        let at = |text: &str| local(&paris, text);
        let usual = (at("2026-03-30 08:00"), at("2026-03-30 08:30"));
        // (case, requested local time, (now, not before), expected messages)
        #[rustfmt::skip]
        let cases: [(&str, LocalSpan, Clock, &[&str]); 8] = [
            (
                "an appointment",
                ("2026-03-30 10:00", "2026-03-30 10:30"), usual,
                &["dr-martin already has appointment appt-1 on 2026-03-30 from 10:00 to 10:30 (Europe/Paris)"],
            ),
            (
                "a hold",
                ("2026-03-30 11:00", "2026-03-30 11:30"), usual,
                &["dr-martin's time on 2026-03-30 from 11:00 to 11:30 (Europe/Paris) is held for another booking (hold hold-1)"],
            ),
            (
                "a buffer",
                ("2026-03-30 10:30", "2026-03-30 10:45"), usual,
                &["dr-martin keeps 10 minutes free around appointment appt-1 on 2026-03-30 from 10:00 to 10:30 (Europe/Paris)"],
            ),
            (
                "outside availability, and an org-wide closure",
                ("2026-03-30 12:00", "2026-03-30 12:30"), usual,
                &[
                    "dr-martin is not available on 2026-03-30 from 12:00 to 12:30 (Europe/Paris): outside their published hours",
                    "dr-martin cannot be booked: the centre is closed on 2026-03-30 from 12:00 to 13:00 (Europe/Paris) (closure closure-1)",
                ],
            ),
            (
                "a whole-day leave",
                ("2026-03-31 09:00", "2026-03-31 09:30"), usual,
                &["dr-martin is on leave on 2026-03-31 (Europe/Paris) (leave leave-1)"],
            ),
            (
                "the past",
                ("2026-03-30 09:00", "2026-03-30 09:30"), (at("2026-03-30 09:05"), at("2026-03-30 09:35")),
                &["dr-martin cannot be booked on 2026-03-30 from 09:00 to 09:30 (Europe/Paris): that time is in the past"],
            ),
            (
                "the minimum notice",
                ("2026-03-30 09:00", "2026-03-30 09:30"), (at("2026-03-30 08:50"), at("2026-03-30 09:20")),
                &["dr-martin cannot be booked on 2026-03-30 from 09:00 to 09:30 (Europe/Paris): bookings need 30 minutes of notice, the earliest start is 2026-03-30 09:20 (Europe/Paris)"],
            ),
            (
                "a folded hour shows its offset",
                ("2026-10-25 02:45", "2026-10-25 04:00"), usual,
                &[
                    "dr-martin is not available on 2026-10-25 from 02:45 (UTC+02) to 04:00 (Europe/Paris): outside their published hours",
                    "dr-martin already has appointment appt-fold on 2026-10-25 from 02:30 (UTC+01) to 03:00 (Europe/Paris)",
                ],
            ),
        ];
        for (case, (start, end), (now, not_before), expected) in cases {
            let found = conflicts(
                &calendar,
                local_interval(&paris, start, end),
                now,
                not_before,
            );
            let messages: Vec<&str> = found.iter().map(|c| c.message.as_str()).collect();
            assert_eq!(messages, expected, "{case}");
        }
    }

    #[test]
    fn each_conflict_carries_the_interval_in_the_way() {
        let paris = zone("Europe/Paris");
        let calendar = booked_calendar();
        let now = local(&paris, "2026-03-30 08:00");
        // (case, requested local time, expected time of the conflict)
        #[rustfmt::skip]
        let cases = [
            ("an appointment: its own time", ("2026-03-30 10:15", "2026-03-30 10:45"), ("2026-03-30 10:00", "2026-03-30 10:30")),
            ("a buffer: the appointment widened by it", ("2026-03-30 10:30", "2026-03-30 10:40"), ("2026-03-30 09:50", "2026-03-30 10:40")),
            ("a windowed closure: its occurrence", ("2026-03-30 12:30", "2026-03-30 12:45"), ("2026-03-30 12:00", "2026-03-30 13:00")),
            ("a whole-day leave: that day", ("2026-03-31 09:00", "2026-03-31 09:30"), ("2026-03-31 00:00", "2026-04-01 00:00")),
        ];
        for (case, (start, end), (expected_start, expected_end)) in cases {
            let found = conflicts(&calendar, local_interval(&paris, start, end), now, now);
            let in_the_way: Vec<Interval> = found
                .iter()
                .filter(|c| c.kind != ConflictKind::OutsideAvailability)
                .map(|c| c.time)
                .collect();
            let expected = vec![local_interval(&paris, expected_start, expected_end)];
            assert_eq!(in_the_way, expected, "{case}");
        }
    }

    #[test]
    fn common_slots_are_free_for_every_calendar_at_once() {
        let paris = zone("Europe/Paris");
        let london = zone("Europe/London");
        let doctor = PractitionerCalendar {
            busy: vec![busy(
                &paris,
                "appt-1",
                "2026-03-30 10:00",
                "2026-03-30 10:30",
                false,
            )],
            ..calendar(
                "dr-martin",
                weekly(&paris, &[(Monday, "09:00", "12:00")], 0),
            )
        };
        // 09:00-11:00 in London is 10:00-12:00 in Paris; the hold and its buffer block 11:10-11:50.
        let nurse = PractitionerCalendar {
            busy: vec![busy(
                &paris,
                "hold-1",
                "2026-03-30 11:20",
                "2026-03-30 11:40",
                true,
            )],
            ..calendar(
                "nurse-lea",
                weekly(&london, &[(Monday, "09:00", "11:00")], 10),
            )
        };
        let early = calendar(
            "nurse-lea",
            weekly(&paris, &[(Monday, "09:10", "10:00")], 0),
        );
        let afternoon = calendar(
            "nurse-lea",
            weekly(&paris, &[(Monday, "14:00", "16:00")], 0),
        );
        // (case, calendars, step, expected local starts of 30-minute slots, first calendar's zone)
        #[rustfmt::skip]
        let cases: [(&str, Vec<PractitionerCalendar>, i64, &[&str]); 4] = [
            ("doctor and nurse: free for both", vec![doctor.clone(), nurse.clone()], 10, &["10:30", "10:40"]),
            ("the nurse first: local times in London", vec![nurse, doctor.clone()], 10, &["09:30", "09:40"]),
            ("aligned on the local hour, not on the common window", vec![doctor.clone(), early], 15, &["09:15", "09:30"]),
            ("no common hours", vec![doctor.clone(), afternoon], 10, &[]),
        ];
        let range = days(&paris, "2026-03-30", "2026-03-30");
        for (case, calendars, step, expected) in cases {
            let slots = common_slots(&calendars, range, mins(30), mins(step), Timestamp::MIN);
            assert_eq!(shown_starts(&slots), strings(expected), "{case}");
        }
        assert_eq!(
            common_slots(
                std::slice::from_ref(&doctor),
                range,
                mins(30),
                mins(15),
                Timestamp::MIN
            ),
            free_slots(&doctor, range, mins(30), mins(15), Timestamp::MIN),
            "one calendar: the same as free_slots"
        );
    }

    /// A month of pseudo-random appointments and holds on weekdays 08:00-12:30 and 13:30-19:00
    /// and Saturday mornings in Paris, with a 5-minute buffer, a leave, a closure, extra hours.
    fn busy_month(first_day: &str, appointments: usize) -> (PractitionerCalendar, Interval) {
        use ExceptionKind::{Closure, ExtraHours, Leave};
        let paris = zone("Europe/Paris");
        let me = Some("dr-martin");
        let mut ranges = on(&WORKDAYS, "08:00", "12:30");
        ranges.extend(on(&WORKDAYS, "13:30", "19:00"));
        ranges.push((Saturday, "09:00", "12:00"));
        let start = local(&paris, &format!("{first_day} 00:00"));
        let range = interval(start, start + SignedDuration::from_hours(31 * 24));
        let first = parse_date("first", first_day).expect("test dates are valid");
        let day = |n: i64| {
            first
                .checked_add(jiff::Span::new().days(n))
                .expect("valid")
                .to_string()
        };
        let (d9, d11, d15, d20) = (day(9), day(11), day(15), day(20));
        let exceptions = vec![
            exception("leave", Leave, me, (&d9, &d11), None, &paris),
            exception(
                "closure",
                Closure,
                None,
                (&d15, &d15),
                Some(("14:00", "17:00")),
                &paris,
            ),
            exception(
                "extra",
                ExtraHours,
                me,
                (&d20, &d20),
                Some(("19:00", "21:00")),
                &paris,
            ),
        ];
        // A small linear congruential generator: the same month on every run.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |bound: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            i64::try_from((seed >> 33) % bound).expect("bounded")
        };
        let busy = (0..appointments)
            .map(|index| {
                let at = range.start + mins(next(31 * 24 * 60));
                let time = interval(at, at + mins(10 + next(50)));
                Busy {
                    time,
                    id: format!("busy-{index}"),
                    is_hold: index % 7 == 0,
                }
            })
            .collect();
        let weekly = weekly(&paris, &ranges, 5);
        (
            PractitionerCalendar {
                exceptions,
                busy,
                ..calendar("dr-martin", weekly)
            },
            range,
        )
    }

    #[test]
    fn free_slots_agree_with_conflicts_over_a_busy_month_across_both_dst_changes() {
        for first_day in ["2026-03-10", "2026-10-10"] {
            let (calendar, range) = busy_month(first_day, 300);
            let (duration, step) = (mins(30), mins(15));
            let now = range.start + SignedDuration::from_hours(3 * 24 + 10);
            let not_before = now + SignedDuration::from_hours(2);
            let free = PractitionerCalendar {
                busy: Vec::new(),
                ..calendar.clone()
            };
            let candidates = free_slots(&free, range, duration, step, Timestamp::MIN);
            let bookable = |slot: &Slot| {
                conflicts(&calendar, interval(slot.start, slot.end), now, not_before).is_empty()
            };
            let expected: Vec<Slot> = candidates.into_iter().filter(bookable).collect();
            let slots = free_slots(&calendar, range, duration, step, not_before);
            assert!(
                slots.len() > 100,
                "{first_day}: a busy month still has free slots"
            );
            assert_eq!(
                slots, expected,
                "{first_day}: the sweep and conflicts() agree"
            );
        }
    }

    #[test]
    fn grid_starts_are_exactly_the_local_times_on_the_step_of_the_hour_whatever_the_zone_does() {
        // (case, zone, first day of a 3-day range around a transition, or none)
        let cases = [
            ("Paris across spring forward", "Europe/Paris", "2026-03-28"),
            ("Paris across fall back", "Europe/Paris", "2026-10-24"),
            (
                "Lord Howe, a 30-minute change",
                "Australia/Lord_Howe",
                "2026-04-04",
            ),
            ("Kathmandu, +05:45", "Asia/Kathmandu", "2026-03-28"),
            (
                "Havana, clocks change at midnight",
                "America/Havana",
                "2026-03-07",
            ),
            ("Noumea, no transition", "Pacific/Noumea", "2026-03-10"),
        ];
        for (case, name, first_day) in cases {
            let zone = zone(name);
            let start = local(&zone, &format!("{first_day} 00:00"));
            let window = interval(start, start + SignedDuration::from_hours(3 * 24));
            for (step, duration) in [(15, 30), (25, 5), (60, 60), (20, 45)] {
                let wanted = Wanted {
                    range: window,
                    duration: mins(duration),
                    step: mins(step),
                    not_before: Timestamp::MIN,
                };
                let transitions = transitions_near(zone.tz(), &[window]);
                let mut chosen = Vec::new();
                window_candidates(window, zone.tz(), &transitions, wanted, &mut chosen);
                // Every minute of the window, kept when its local time is on the grid.
                let mut expected = Vec::new();
                let mut at = window.start;
                while at + mins(duration) <= window.end {
                    let local = zone.tz().to_datetime(at);
                    if i64::from(local.minute()) % step == 0 && local.second() == 0 {
                        expected.push((at, local, zone.tz().to_offset(at)));
                    }
                    at += mins(1);
                }
                let chosen: Vec<_> = chosen
                    .iter()
                    .map(|slot| (slot.start, slot.local_start, slot.utc_offset))
                    .collect();
                assert_eq!(chosen, expected, "{case}, step {step}");
            }
        }
    }

    #[test]
    fn a_range_starting_in_the_gap_or_the_fold_offers_every_start_of_the_grid_inside_it() {
        let paris = zone("Europe/Paris");
        let calendar = calendar(
            "dr-martin",
            weekly(&paris, &[(Sunday, "02:30", "05:00")], 0),
        );
        // (case, date, expected starts of 30-minute slots every 30 minutes, with offsets)
        #[rustfmt::skip]
        let cases: [(&str, &str, &[&str]); 2] = [
            (
                "spring forward: 02:30 does not exist, the range starts at 03:00 CEST",
                "2026-03-29",
                &["03:00+02", "03:30+02", "04:00+02", "04:30+02"],
            ),
            (
                "fall back: from 02:30 CEST, the second 02:00 (CET, 01:00Z) is inside the range",
                "2026-10-25",
                &["02:30+02", "02:00+01", "02:30+01", "03:00+01", "03:30+01", "04:00+01", "04:30+01"],
            ),
        ];
        for (case, date, expected) in cases {
            let range = days(&paris, date, date);
            let slots = free_slots(&calendar, range, mins(30), mins(30), Timestamp::MIN);
            let shown: Vec<String> = slots
                .iter()
                .map(|slot| format!("{}{}", hhmm(slot.local_start.time()), slot.utc_offset))
                .collect();
            assert_eq!(shown, strings(expected), "{case}");
            for slot in &slots {
                let time = interval(slot.start, slot.end);
                assert_eq!(
                    conflicts(&calendar, time, Timestamp::MIN, Timestamp::MIN),
                    vec![],
                    "{case}: {} is bookable",
                    slot.start
                );
            }
        }
        let autumn = days(&paris, "2026-10-25", "2026-10-25");
        let second_two = utc("2026-10-25T01:00:00Z");
        assert!(
            free_slots(&calendar, autumn, mins(30), mins(30), Timestamp::MIN)
                .iter()
                .any(|slot| slot.start == second_two),
            "01:00Z (02:00 CET) is bookable, so it is listed"
        );
    }

    #[test]
    fn a_step_that_does_not_divide_the_hour_starts_again_at_each_hour() {
        let paris = zone("Europe/Paris");
        let calendar = calendar(
            "dr-martin",
            weekly(&paris, &[(Monday, "09:00", "11:00")], 0),
        );
        let range = days(&paris, "2026-03-30", "2026-03-30");
        let slots = free_slots(&calendar, range, mins(10), mins(25), Timestamp::MIN);
        assert_eq!(
            shown_starts(&slots),
            strings(&["09:00", "09:25", "09:50", "10:00", "10:25", "10:50"]),
        );
    }
}
