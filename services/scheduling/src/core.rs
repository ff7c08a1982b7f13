//! The scheduling core: every operation, with its authorisation, transaction and audit, knowing
//! nothing of gRPC. Each takes the caller and validated values, and returns domain values.
//!
//! - [`availability`]: weekly availability and exceptions;
//! - [`booking`]: free slots, holds and bookings (no double booking);
//! - [`appointments`]: reading, the lifecycle, history and watching;
//! - [`calendar`]: iCalendar export;
//! - [`rooms`]: the appointments' video rooms in the signalling service.

pub mod appointments;
pub mod availability;
pub mod booking;
pub mod calendar;
pub mod rooms;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    Database,
    audit::{AuditEntry, AuditWriter, Outcome},
    events::EventBus,
    identity::{Caller, Identity, Role},
};

use crate::error::SchedulingError;

/// Where "now" comes from (tests move it).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The configurable rules of booking.
#[derive(Debug, Clone)]
pub struct Rules {
    /// No booking starts sooner than this after now.
    pub minimum_notice: SignedDuration,
    /// How long a hold lasts.
    pub hold: SignedDuration,
    /// Video rooms admit participants from this long before the start…
    pub room_opens_before: SignedDuration,
    /// …to this long after the end.
    pub room_closes_after: SignedDuration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            minimum_notice: SignedDuration::ZERO,
            hold: SignedDuration::from_mins(5),
            room_opens_before: SignedDuration::from_mins(30),
            room_closes_after: SignedDuration::from_mins(60),
        }
    }
}

/// The scheduling service's core.
#[derive(Clone)]
pub struct Scheduler {
    pub(crate) db: Database,
    pub(crate) bus: EventBus,
    pub(crate) rules: Rules,
    pub(crate) clock: Clock,
    pub(crate) rooms: rooms::Rooms,
    pub(crate) auditor: AuditWriter,
}

impl Scheduler {
    /// A scheduler over `db`, publishing changes on `bus`, opening video rooms with `rooms`.
    pub fn new(
        db: Database,
        bus: EventBus,
        rules: Rules,
        clock: Clock,
        rooms: rooms::Rooms,
    ) -> Self {
        let auditor = AuditWriter::start(db.clone());
        Scheduler {
            db,
            bus,
            rules,
            clock,
            rooms,
            auditor,
        }
    }

    /// The current instant, truncated to the microsecond (what the database stores).
    pub(crate) fn now(&self) -> Timestamp {
        let now = (self.clock)();
        Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now)
    }

    /// Records an audit entry outside any transaction (reads, refusals).
    pub(crate) async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        kind: &str,
        id: &str,
        outcome: Outcome,
    ) {
        self.record_audit(AuditEntry::new(caller, action, kind, id, outcome))
            .await;
    }

    /// Chains the audit entries staged by committed changes (see `telehealth_kit::audit::stage`)
    /// and waits until that is durable; a failure is logged, the entries stay staged and the
    /// writer's sweep chains them.
    pub(crate) async fn flush_audit(&self) {
        if let Err(error) = self.auditor.flush().await {
            tracing::error!(%error, "staged audit entries not chained yet; the writer retries");
        }
    }

    /// Writes `entry` to the audit trail (batched with concurrent ones) and waits until it is
    /// committed.
    pub(crate) async fn record_audit(&self, entry: AuditEntry) {
        let (action, id) = (entry.action.clone(), entry.record_id.clone());
        if let Err(error) = self.auditor.record(entry).await {
            tracing::error!(%error, %action, %id, "could not write the audit record");
        }
    }
}

/// The person behind a call, or PERMISSION_DENIED for a service caller.
pub(crate) fn person(caller: &Caller) -> Result<&Identity, SchedulingError> {
    match caller {
        Caller::Person(identity) => Ok(identity),
        Caller::Service(_) => Err(SchedulingError::PermissionDenied(
            "this call needs a person's identity",
        )),
    }
}

/// True when `identity` may manage `practitioner`'s calendar (publish availability, book):
/// the practitioner himself, or a coordinator of the practitioner's org.
pub(crate) fn manages(identity: &Identity, practitioner: &str, practitioner_org: &str) -> bool {
    identity.subject == practitioner
        || (identity.has_role(Role::Coordinator) && identity.org == practitioner_org)
}

/// The audit outcome of an error.
pub(crate) fn outcome_of(error: &SchedulingError) -> Outcome {
    match error {
        SchedulingError::NotFound(_) => Outcome::NotFound,
        SchedulingError::PermissionDenied(_) | SchedulingError::Identity(_) => Outcome::Denied,
        SchedulingError::InvalidArgument { .. }
        | SchedulingError::FailedPrecondition(_)
        | SchedulingError::VersionMismatch { .. }
        | SchedulingError::Conflicts(_) => Outcome::Invalid,
        _ => Outcome::Failed,
    }
}
