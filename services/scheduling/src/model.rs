//! Appointments, their statuses and the lifecycle rules.

use jiff::Timestamp;

use crate::{domain::Interval, error::SchedulingError};

pub use telehealth_kit::record::ActorRecord;

/// An appointment's status; each maps to one FHIR R4 `Appointment.status` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// FHIR `booked`.
    Booked,
    /// FHIR `arrived`: the patient (or the nurse beside him) is in the waiting room.
    Arrived,
    /// FHIR `checked-in` (R4 has no "in progress" appointment status; the encounter is
    /// `in-progress`): the teleconsultation has started.
    InProgress,
    /// FHIR `fulfilled`.
    Fulfilled,
    /// FHIR `cancelled`.
    Cancelled,
    /// FHIR `noshow`.
    NoShow,
}

impl Status {
    /// Stored and logged name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Booked => "booked",
            Status::Arrived => "arrived",
            Status::InProgress => "in_progress",
            Status::Fulfilled => "fulfilled",
            Status::Cancelled => "cancelled",
            Status::NoShow => "noshow",
        }
    }

    /// The FHIR R4 `Appointment.status` code.
    pub fn fhir(self) -> &'static str {
        match self {
            Status::Booked => "booked",
            Status::Arrived => "arrived",
            Status::InProgress => "checked-in",
            Status::Fulfilled => "fulfilled",
            Status::Cancelled => "cancelled",
            Status::NoShow => "noshow",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Booked,
            Status::Arrived,
            Status::InProgress,
            Status::Fulfilled,
            Status::Cancelled,
            Status::NoShow,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// True while the appointment holds the practitioners' time.
    pub fn occupies_time(self) -> bool {
        matches!(self, Status::Booked | Status::Arrived | Status::InProgress)
    }
}

/// What a caller asks to do to an appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    CheckIn,
    Start,
    Finish,
    Cancel,
    NoShow,
    Reschedule,
}

/// The result of applying a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The status changes to this.
    Change(Status),
    /// The transition was already made (a retry): nothing changes.
    AlreadyDone,
}

/// The lifecycle: which transition is legal from which status.
///
/// ```text
/// BOOKED --check in--> ARRIVED --start--> IN_PROGRESS --finish--> FULFILLED
/// BOOKED --start--> IN_PROGRESS
/// BOOKED | ARRIVED --cancel--> CANCELLED
/// BOOKED --no-show (after the start time)--> NOSHOW
/// BOOKED --reschedule--> BOOKED
/// ```
/// Repeating the transition that led to the current status is [`Outcome::AlreadyDone`].
pub fn apply(current: Status, transition: Transition) -> Result<Outcome, SchedulingError> {
    use Status::{Arrived, Booked, Cancelled, Fulfilled, InProgress};
    use Transition::{Cancel, CheckIn, Finish, Reschedule, Start};
    let outcome = match (current, transition) {
        (Booked, CheckIn) => Outcome::Change(Arrived),
        (Arrived, CheckIn) => Outcome::AlreadyDone,
        (Booked | Arrived, Start) => Outcome::Change(InProgress),
        (InProgress, Start) => Outcome::AlreadyDone,
        (InProgress, Finish) => Outcome::Change(Fulfilled),
        (Fulfilled, Finish) => Outcome::AlreadyDone,
        (Booked | Arrived, Cancel) => Outcome::Change(Cancelled),
        (Cancelled, Cancel) => Outcome::AlreadyDone,
        (Booked, Transition::NoShow) => Outcome::Change(Status::NoShow),
        (Status::NoShow, Transition::NoShow) => Outcome::AlreadyDone,
        (Booked, Reschedule) => Outcome::Change(Booked),
        (status, transition) => {
            return Err(SchedulingError::FailedPrecondition(format!(
                "cannot {} an appointment that is {}",
                transition_verb(transition),
                status.as_str().replace('_', " ")
            )));
        }
    };
    Ok(outcome)
}

fn transition_verb(transition: Transition) -> &'static str {
    match transition {
        Transition::CheckIn => "check in to",
        Transition::Start => "start",
        Transition::Finish => "finish",
        Transition::Cancel => "cancel",
        Transition::NoShow => "mark as no-show",
        Transition::Reschedule => "reschedule",
    }
}

/// Why and by whom an appointment was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub by: ActorRecord,
    pub at: Timestamp,
    /// `CancellationReason` number of the contract.
    pub reason: i32,
    pub comment: String,
}

/// A teleconsultation appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appointment {
    pub id: String,
    pub org_id: String,
    pub status: Status,
    pub time: Interval,
    pub time_zone: String,
    pub doctor: String,
    pub nurse: Option<String>,
    pub patient_pseudonym: String,
    pub patient_subject: Option<String>,
    pub reason: String,
    pub room_id: Option<String>,
    pub reschedule_count: i64,
    pub cancellation: Option<Cancellation>,
    pub arrived_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub no_show_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub created_by: ActorRecord,
    pub updated_at: Timestamp,
    pub version: i64,
    /// The patient's consent the teleconsultation was started on.
    pub consent_id: Option<String>,
}

impl Appointment {
    /// Everyone who takes part (doctor, nurse, patient's own account).
    pub fn participants(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.doctor.as_str())
            .chain(self.nurse.as_deref())
            .chain(self.patient_subject.as_deref())
    }
}

/// The kinds of history event (numbers of the contract's `AppointmentEventKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Booked = 1,
    Rescheduled = 2,
    Cancelled = 3,
    CheckedIn = 4,
    JoinedRoom = 5,
    Started = 6,
    Finished = 7,
    NoShow = 8,
}

impl EventKind {
    /// The kind of a stored number (`None` for a number no kind has).
    pub fn from_number(number: i64) -> Option<EventKind> {
        use EventKind::*;
        [
            Booked,
            Rescheduled,
            Cancelled,
            CheckedIn,
            JoinedRoom,
            Started,
            Finished,
            NoShow,
        ]
        .into_iter()
        .find(|kind| *kind as i64 == number)
    }
}

/// Who joined a video room (numbers of the contract's `ParticipantRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantRole {
    Doctor = 1,
    Nurse = 2,
    Patient = 3,
}

impl ParticipantRole {
    /// The role of a contract or stored number (`None` for unset or unknown).
    pub fn from_number(number: i64) -> Option<ParticipantRole> {
        use ParticipantRole::*;
        [Doctor, Nurse, Patient]
            .into_iter()
            .find(|role| *role as i64 == number)
    }
}

/// The id of an appointment.
pub type AppointmentId = telehealth_kit::ids::Id<Appointment>;
/// Marks the ids of holds ([`HoldId`]).
pub enum Hold {}
/// The id of a hold on a slot.
pub type HoldId = telehealth_kit::ids::Id<Hold>;
/// Marks the ids of availability exceptions ([`ExceptionId`]).
pub enum Exception {}
/// The id of an availability exception (leave).
pub type ExceptionId = telehealth_kit::ids::Id<Exception>;

/// One entry of an appointment's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEvent {
    pub id: String,
    pub appointment_id: String,
    pub sequence: i64,
    pub kind: EventKind,
    pub occurred_at: Timestamp,
    pub actor: ActorRecord,
    pub previous_status: Option<Status>,
    pub new_status: Status,
    pub previous_time: Option<Interval>,
    pub new_time: Option<Interval>,
    pub participant_subject: String,
    /// Set for [`EventKind::JoinedRoom`].
    pub participant_role: Option<ParticipantRole>,
    pub comment: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_transition_pair_follows_the_lifecycle() {
        use Status::{Arrived, Booked, Cancelled, Fulfilled, InProgress};
        use Transition::{Cancel, CheckIn, Finish, Reschedule, Start};
        let statuses = [
            Booked,
            Arrived,
            InProgress,
            Fulfilled,
            Cancelled,
            Status::NoShow,
        ];
        let transitions = [
            CheckIn,
            Start,
            Finish,
            Cancel,
            Transition::NoShow,
            Reschedule,
        ];
        let legal = [
            (Booked, CheckIn, Some(Arrived)),
            (Booked, Start, Some(InProgress)),
            (Booked, Cancel, Some(Cancelled)),
            (Booked, Transition::NoShow, Some(Status::NoShow)),
            (Booked, Reschedule, Some(Booked)),
            (Arrived, CheckIn, None),
            (Arrived, Start, Some(InProgress)),
            (Arrived, Cancel, Some(Cancelled)),
            (InProgress, Start, None),
            (InProgress, Finish, Some(Fulfilled)),
            (Fulfilled, Finish, None),
            (Cancelled, Cancel, None),
            (Status::NoShow, Transition::NoShow, None),
        ];
        for status in statuses {
            for transition in transitions {
                let expected = legal
                    .iter()
                    .find(|(s, t, _)| *s == status && *t == transition)
                    .map(|(_, _, to)| match to {
                        Some(to) => Outcome::Change(*to),
                        None => Outcome::AlreadyDone,
                    });
                let actual = apply(status, transition).ok();
                assert_eq!(actual, expected, "{status:?} --{transition:?}-->");
            }
        }
    }

    #[test]
    fn statuses_map_one_to_one_onto_fhir() {
        let all = [
            Status::Booked,
            Status::Arrived,
            Status::InProgress,
            Status::Fulfilled,
            Status::Cancelled,
            Status::NoShow,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|s| s.fhir()).collect();
        assert_eq!(codes.len(), all.len(), "no two statuses share a FHIR code");
        for status in all {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }
}
