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

use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    Database,
    audit::{AuditEntry, Outcome},
    consent::Consents,
    directory::Directory,
    events::EventBus,
    identity::{Caller, Identity, Role},
    service_core::ServiceCore,
};

use crate::error::SchedulingError;

pub use telehealth_kit::service_core::Clock;

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
    /// `CheckIn` and `StartTeleconsultation` are accepted from this long before the start…
    pub check_in_opens_before: SignedDuration,
    /// …to this long after the start (an appointment months ahead cannot be started, and one
    /// long past cannot be checked in to).
    pub check_in_closes_after: SignedDuration,
}

impl Rules {
    /// The booking rules from the configuration.
    pub fn from_settings(settings: &telehealth_kit::config::SchedulingRules) -> Rules {
        Rules {
            minimum_notice: SignedDuration::from_mins(settings.minimum_notice_minutes),
            hold: SignedDuration::from_secs(settings.hold_seconds),
            room_opens_before: SignedDuration::from_mins(settings.room_opens_before_minutes),
            room_closes_after: SignedDuration::from_mins(settings.room_closes_after_minutes),
            check_in_opens_before: SignedDuration::from_mins(
                settings.check_in_opens_before_minutes,
            ),
            check_in_closes_after: SignedDuration::from_mins(
                settings.check_in_closes_after_minutes,
            ),
        }
    }
}

/// The defaults are the configuration's: one source for each.
impl Default for Rules {
    fn default() -> Self {
        Rules::from_settings(&telehealth_kit::config::SchedulingRules::default())
    }
}

/// The scheduling service's core.
#[derive(Clone)]
pub struct Scheduler {
    pub(crate) base: ServiceCore,
    pub(crate) bus: EventBus,
    pub(crate) rules: Rules,
    pub(crate) rooms: rooms::Rooms,
    pub(crate) directory: Directory,
    pub(crate) consents: Consents,
}

impl Scheduler {
    /// A scheduler over `db`, publishing changes on `bus`, opening video rooms with `rooms`,
    /// checking the practitioners a request names against `directory`.
    pub fn new(
        db: Database,
        bus: EventBus,
        rules: Rules,
        clock: Clock,
        rooms: rooms::Rooms,
        directory: Directory,
        consents: Consents,
    ) -> Self {
        Scheduler {
            base: ServiceCore::new(db, clock),
            bus,
            rules,
            rooms,
            directory,
            consents,
        }
    }

    /// The current instant, truncated to the microsecond (what the database stores).
    pub(crate) fn now(&self) -> Timestamp {
        self.base.now()
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
        self.base.flush_audit().await;
    }

    /// Writes `entry` to the audit trail (batched with concurrent ones) and waits until it is
    /// committed.
    pub(crate) async fn record_audit(&self, entry: AuditEntry) {
        self.base.audit(entry).await;
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

/// The roles a practitioner with a calendar holds in their organisation.
pub(crate) const PRACTITIONER_ROLES: [Role; 2] = [Role::Doctor, Role::Nurse];

impl Scheduler {
    /// Succeeds when `subject` is the caller or an active member of the caller's organisation
    /// holding one of `roles`; otherwise NOT_FOUND `what`, as for someone who does not exist
    /// (membership comes from the directory, never from a first write here).
    pub(crate) async fn require_member(
        &self,
        identity: &Identity,
        subject: &str,
        roles: &[Role],
        what: &'static str,
    ) -> Result<(), SchedulingError> {
        if subject == identity.subject {
            return Ok(());
        }
        let membership = self.directory.membership(&identity.org, subject).await?;
        if membership.is_some_and(|m| roles.iter().any(|r| m.has_role(*r))) {
            Ok(())
        } else {
            Err(SchedulingError::NotFound(what))
        }
    }

    /// Succeeds when `identity` may manage `practitioner`'s calendar (publish availability,
    /// exceptions, book): the practitioner himself, or a coordinator of an organisation the
    /// practitioner is an active member of, and that owns the calendar (`calendar_org`, when
    /// one is published). Anyone else gets the NOT_FOUND of an unknown practitioner.
    pub(crate) async fn require_manager(
        &self,
        identity: &Identity,
        practitioner: &str,
        calendar_org: Option<&str>,
    ) -> Result<(), SchedulingError> {
        if identity.subject == practitioner {
            return Ok(());
        }
        if calendar_org.is_some_and(|org| org != identity.org) {
            return Err(SchedulingError::NotFound("practitioner"));
        }
        self.require_member(identity, practitioner, &PRACTITIONER_ROLES, "practitioner")
            .await?;
        if identity.has_role(Role::Coordinator) {
            Ok(())
        } else {
            Err(SchedulingError::PermissionDenied(
                "only the practitioner or a coordinator of the centre manages this calendar",
            ))
        }
    }
}
