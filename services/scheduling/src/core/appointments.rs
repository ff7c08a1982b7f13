//! Reading appointments, their lifecycle, history and live changes.

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use telehealth_kit::{
    KitError, Part,
    audit::{AuditEntry, Outcome},
    consent::Act,
    events::StagedEvent,
    identity::{Caller, Identity, Role},
};

use super::{Scheduler, person, rooms::CloseReason};
use crate::{
    error::SchedulingError,
    model::{
        self, Appointment, AppointmentId, EventKind, HistoryEvent, ParticipantRole, Status,
        Transition,
    },
    store::{self, AppointmentFilter},
};
use telehealth_kit::record::ActorRecord;

/// What the event bus carries for an appointment change (enough to route it; watchers read the
/// record itself from the database).
#[derive(Debug, Serialize, Deserialize)]
struct ChangeNotice {
    appointment_id: String,
    org_id: String,
    participants: Vec<String>,
    sequence: i64,
}

/// True when `identity` may see `appointment`: its participants and its org's coordinators.
pub(crate) fn can_see(identity: &Identity, appointment: &Appointment) -> bool {
    appointment.participants().any(|p| p == identity.subject)
        || (identity.has_role(Role::Coordinator) && identity.org == appointment.org_id)
}

/// Whether `identity` may read `appointment` and its history: whoever may see it, and the
/// doctors of its organisation (a patient's file shows them every appointment of the patient;
/// changing it stays with its participants and coordinators).
fn can_read(identity: &Identity, appointment: &Appointment) -> bool {
    can_see(identity, appointment)
        || (identity.has_role(Role::Doctor) && identity.org == appointment.org_id)
}

impl Scheduler {
    /// One appointment, if the caller may see it (otherwise NOT_FOUND, as if it did not exist).
    pub async fn appointment(
        &self,
        caller: &Caller,
        id: &AppointmentId,
    ) -> Result<Appointment, SchedulingError> {
        let result = self.visible(caller, id).await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "GetAppointment", "appointment", id, outcome)
            .await;
        result
    }

    async fn visible(&self, caller: &Caller, id: &str) -> Result<Appointment, SchedulingError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        match store::appointment(&mut conn, id).await? {
            Some(appointment) if can_read(identity, &appointment) => Ok(appointment),
            _ => Err(SchedulingError::NotFound("appointment")),
        }
    }

    /// Appointments matching `filter` that the caller may see, one page after `after`.
    pub async fn appointments(
        &self,
        caller: &Caller,
        mut filter: AppointmentFilter,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Appointment>, SchedulingError> {
        let identity = person(caller)?;
        let by_patient = !filter.patient_pseudonyms.is_empty();
        // The filter is narrowed to what the caller may see, in SQL, so pages stay full. A
        // patient's file shows the doctors of the centre every appointment of theirs.
        if identity.has_role(Role::Coordinator) || (by_patient && identity.has_role(Role::Doctor)) {
            filter.org_id = Some(identity.org.clone());
        } else {
            filter.participant = Some(identity.subject.clone());
        }
        if by_patient {
            // Under every id that names the patient, as the caller's organisation sees them:
            // records made before a merge name the merged id.
            filter.patient_pseudonyms = self
                .consents
                .ids_of(&identity.org, &filter.patient_pseudonyms[0])
                .await?;
        }
        let mut conn = self.base.db().pool().acquire().await?;
        let found = store::list_appointments(&mut conn, &filter, after, limit).await?;
        drop(conn);
        for appointment in &found {
            self.audit(
                caller,
                "ListAppointments",
                "appointment",
                &appointment.id,
                Outcome::Ok,
            )
            .await;
        }
        Ok(found)
    }

    /// Applies a lifecycle transition requested by `caller`.
    pub async fn transition(
        &self,
        caller: &Caller,
        id: &AppointmentId,
        transition: Transition,
        cancellation: Option<(i32, String)>,
        expected_version: i64,
    ) -> Result<Appointment, SchedulingError> {
        let result = self
            .transition_inner(caller, id, transition, cancellation, expected_version, None)
            .await;
        if let Err(error) = &result {
            self.audit(
                caller,
                action_name(transition),
                "appointment",
                id,
                Outcome::of(error),
            )
            .await;
        }
        result
    }

    /// A participant joined the video room (called by signalling when the doctor is not in it):
    /// BOOKED becomes ARRIVED; in any case the join is recorded in the history and announced to
    /// the watchers, so the doctor sees who waits (also when the appointment is already ARRIVED,
    /// the usual case: the room opens at check-in). Returns the status and whether it changed.
    pub async fn mark_waiting_room(
        &self,
        caller: &Caller,
        id: &AppointmentId,
        participant: &str,
        participant_role: Option<ParticipantRole>,
    ) -> Result<(Status, bool), SchedulingError> {
        if !matches!(caller, Caller::Service(Part::Signalling)) {
            return Err(SchedulingError::PermissionDenied(
                "only the signalling service reports room joins",
            ));
        }
        let mut conn = self.base.db().pool().acquire().await?;
        let current = store::appointment(&mut conn, id)
            .await?
            .ok_or(SchedulingError::NotFound("appointment"))?;
        drop(conn);
        let joined = (participant.to_owned(), participant_role);
        if current.status == Status::Booked {
            let updated = self
                .transition_inner(caller, id, Transition::CheckIn, None, 0, Some(joined))
                .await?;
            return Ok((updated.status, updated.status != current.status));
        }
        let status = self.record_join(caller, id, joined).await?;
        Ok((status, false))
    }

    /// Records a join in the room of an ARRIVED or IN_PROGRESS appointment (its status and
    /// version do not change) and announces it; FAILED_PRECONDITION once the appointment is over.
    async fn record_join(
        &self,
        caller: &Caller,
        id: &str,
        (participant_subject, participant_role): (String, Option<ParticipantRole>),
    ) -> Result<Status, SchedulingError> {
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_appointment(&mut tx, id).await?;
        let current = store::appointment(&mut tx, id)
            .await?
            .ok_or(SchedulingError::NotFound("appointment"))?;
        if !current.status.occupies_time() {
            return Err(SchedulingError::FailedPrecondition(format!(
                "the appointment is {}: its room should not be open",
                current.status.as_str().replace('_', " ")
            )));
        }
        let event = HistoryEvent {
            id: uuid::Uuid::new_v4().to_string(),
            appointment_id: id.to_owned(),
            sequence: 0,
            kind: EventKind::JoinedRoom,
            occurred_at: now,
            actor: ActorRecord::of(caller),
            previous_status: Some(current.status),
            new_status: current.status,
            previous_time: None,
            new_time: None,
            participant_subject,
            participant_role,
            comment: String::new(),
        };
        let sequence = store::append_event(&mut tx, &event).await?;
        let entry = AuditEntry::new(caller, "MarkWaitingRoom", "appointment", id, Outcome::Ok);
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let announcement = self.announce(&mut tx, &current, sequence).await?;
        tx.commit().await?;
        self.flush_audit().await;
        announcement.send();
        tracing::info!(appointment_id = %id, "presence in the video room recorded");
        Ok(current.status)
    }

    async fn transition_inner(
        &self,
        caller: &Caller,
        id: &str,
        transition: Transition,
        cancellation: Option<(i32, String)>,
        expected_version: i64,
        joined: Option<(String, Option<ParticipantRole>)>,
    ) -> Result<Appointment, SchedulingError> {
        // The video room is opened before the change (a network call, outside the transaction):
        // a room that cannot be opened leaves the appointment as it was.
        let mut room_id = None;
        let mut consent = None;
        if matches!(transition, Transition::CheckIn | Transition::Start) {
            let mut conn = self.base.db().pool().acquire().await?;
            let before = store::appointment(&mut conn, id)
                .await?
                .ok_or(SchedulingError::NotFound("appointment"))?;
            drop(conn);
            self.authorize_change(caller, &before, transition)?;
            let changes = matches!(
                model::apply(before.status, transition)?,
                model::Outcome::Change(_)
            );
            if changes && joined.is_none() {
                self.require_check_in_window(&before, self.now())?;
            }
            // Starting is the act: the patient must have consented to a teleconsultation.
            if transition == Transition::Start && changes {
                consent = Some(
                    self.consents
                        .check(
                            &before.org_id,
                            &before.patient_pseudonym,
                            Act::Teleconsultation,
                        )
                        .await?,
                );
            }
            if before.room_id.is_none() && changes {
                room_id = Some(self.rooms.open(&before).await?);
            }
        }
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_appointment(&mut tx, id).await?;
        let current = store::appointment(&mut tx, id)
            .await?
            .ok_or(SchedulingError::NotFound("appointment"))?;
        self.authorize_change(caller, &current, transition)?;
        if expected_version != 0 && expected_version != current.version {
            return Err(SchedulingError::VersionMismatch {
                current: current.version,
            });
        }
        let new_status = match model::apply(current.status, transition)? {
            model::Outcome::AlreadyDone => return Ok(current),
            model::Outcome::Change(status) => status,
        };
        // A person's check-in or start (not a presence reported by signalling, whose room
        // admission window already applies).
        if matches!(transition, Transition::CheckIn | Transition::Start) && joined.is_none() {
            self.require_check_in_window(&current, now)?;
        }
        if transition == Transition::NoShow && now < current.time.start {
            return Err(SchedulingError::FailedPrecondition(
                "a patient can only be marked absent after the appointment's start time".into(),
            ));
        }
        let mut updated = current.clone();
        updated.status = new_status;
        updated.updated_at = now;
        updated.version += 1;
        let kind = match transition {
            Transition::CheckIn if joined.is_some() => EventKind::JoinedRoom,
            Transition::CheckIn => {
                updated.arrived_at = Some(now);
                EventKind::CheckedIn
            }
            Transition::Start => {
                updated.started_at = Some(now);
                updated.consent_id = consent.map(|c| c.consent_id);
                if updated.arrived_at.is_none() && current.status == Status::Arrived {
                    updated.arrived_at = Some(now);
                }
                EventKind::Started
            }
            Transition::Finish => {
                updated.finished_at = Some(now);
                EventKind::Finished
            }
            Transition::Cancel => {
                let (reason, comment) = cancellation.clone().unwrap_or((0, String::new()));
                updated.cancellation = Some(model::Cancellation {
                    by: ActorRecord::of(caller),
                    at: now,
                    reason,
                    comment,
                });
                EventKind::Cancelled
            }
            Transition::NoShow => {
                updated.no_show_at = Some(now);
                EventKind::NoShow
            }
            Transition::Reschedule => EventKind::Rescheduled,
        };
        if joined.is_some() {
            updated.arrived_at = Some(now);
        }
        if updated.room_id.is_none() {
            updated.room_id = room_id;
        }
        store::update_appointment(&mut tx, &updated).await?;
        if !new_status.occupies_time() {
            store::release(&mut tx, id).await?;
        }
        let (participant_subject, participant_role) = joined.unwrap_or_default();
        let event = HistoryEvent {
            id: uuid::Uuid::new_v4().to_string(),
            appointment_id: id.to_owned(),
            sequence: 0,
            kind,
            occurred_at: now,
            actor: ActorRecord::of(caller),
            previous_status: Some(current.status),
            new_status,
            previous_time: None,
            new_time: None,
            participant_subject,
            participant_role,
            comment: cancellation.map(|(_, c)| c).unwrap_or_default(),
        };
        let sequence = store::append_event(&mut tx, &event).await?;
        let entry = AuditEntry::new(
            caller,
            action_name(transition),
            "appointment",
            id,
            Outcome::Ok,
        );
        // The record commits with the change, then joins the chain before the caller hears of it.
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let announcement = self.announce(&mut tx, &updated, sequence).await?;
        tx.commit().await?;
        self.flush_audit().await;
        announcement.send();
        let close = match transition {
            Transition::Finish => Some(CloseReason::Finished),
            Transition::Cancel => Some(CloseReason::Cancelled),
            Transition::NoShow => Some(CloseReason::NoShow),
            _ => None,
        };
        if let (Some(reason), Some(_)) = (close, &updated.room_id) {
            self.rooms.close(&updated, reason).await;
        }
        tracing::info!(appointment_id = %id, status = updated.status.as_str(), "appointment changed");
        Ok(updated)
    }

    /// FAILED_PRECONDITION unless `now` is inside the window in which `appointment` may be
    /// checked in to or started (`Rules::check_in_opens_before` its start to
    /// `check_in_closes_after` it), with the window in words, in the appointment's zone and UTC.
    fn require_check_in_window(
        &self,
        appointment: &Appointment,
        now: jiff::Timestamp,
    ) -> Result<(), SchedulingError> {
        let opens = appointment.time.start - self.rules.check_in_opens_before;
        let closes = appointment.time.start + self.rules.check_in_closes_after;
        if opens <= now && now <= closes {
            return Ok(());
        }
        let zone = crate::domain::Zone::parse("time_zone", &appointment.time_zone)
            .unwrap_or_else(|_| crate::domain::Zone::paris());
        let when = if now < opens { "not yet" } else { "no longer" };
        Err(SchedulingError::FailedPrecondition(format!(
            "this appointment can {when} be checked in to or started: that is possible from {} \
             before its start to {} after it, i.e. {}; it is now {}",
            minutes(self.rules.check_in_opens_before),
            minutes(self.rules.check_in_closes_after),
            describe_window(&zone, opens, closes),
            describe_local(&zone, now),
        )))
    }

    /// Who may apply which transition (NOT_FOUND for those who may not even see it).
    pub(crate) fn authorize_change(
        &self,
        caller: &Caller,
        appointment: &Appointment,
        transition: Transition,
    ) -> Result<(), SchedulingError> {
        let identity = match caller {
            Caller::Service(Part::Signalling) if transition == Transition::CheckIn => return Ok(()),
            _ => person(caller)?,
        };
        if !can_see(identity, appointment) {
            return Err(SchedulingError::NotFound("appointment"));
        }
        let is_doctor = appointment.doctor == identity.subject;
        let is_coordinator =
            identity.has_role(Role::Coordinator) && identity.org == appointment.org_id;
        let allowed = match transition {
            Transition::Cancel | Transition::Reschedule | Transition::NoShow => {
                is_doctor || is_coordinator
            }
            Transition::Start | Transition::Finish => is_doctor,
            Transition::CheckIn => {
                is_coordinator
                    || appointment.patient_subject.as_deref() == Some(identity.subject.as_str())
                    || appointment.nurse.as_deref() == Some(identity.subject.as_str())
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(SchedulingError::PermissionDenied(
                "your part in this appointment does not allow this change",
            ))
        }
    }

    /// The history of an appointment the caller may see.
    pub async fn history(
        &self,
        caller: &Caller,
        id: &AppointmentId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<HistoryEvent>, SchedulingError> {
        let appointment = self.visible(caller, id).await;
        let outcome = appointment
            .as_ref()
            .map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "GetAppointmentHistory", "appointment", id, outcome)
            .await;
        appointment?;
        let mut conn = self.base.db().pool().acquire().await?;
        store::history(&mut conn, id, after, limit).await
    }

    /// Changes to the appointments the caller may see (only `practitioner`'s if given), as
    /// they happen, from any replica.
    /// Watching another practitioner is for a coordinator of an org that practitioner is a
    /// member of; anyone else gets PERMISSION_DENIED.
    pub async fn watch(
        &self,
        caller: &Caller,
        practitioner: Option<String>,
    ) -> Result<
        impl Stream<Item = Result<(HistoryEvent, Appointment), SchedulingError>> + use<>,
        SchedulingError,
    > {
        let identity = person(caller)?.clone();
        if let Some(other) = practitioner.as_deref().filter(|p| *p != identity.subject) {
            if !identity.has_role(Role::Coordinator) {
                return Err(SchedulingError::PermissionDenied(
                    "you may watch your own appointments only; a coordinator watches the centre's",
                ));
            }
            self.require_member(&identity, other, &super::PRACTITIONER_ROLES, "practitioner")
                .await?;
        }
        let caller = caller.clone();
        let scheduler = self.clone();
        let notices = self.bus.subscribe();
        Ok(notices.filter_map(move |notice| {
            let (identity, caller, scheduler, practitioner) = (
                identity.clone(),
                caller.clone(),
                scheduler.clone(),
                practitioner.clone(),
            );
            async move {
                // Missed notifications end the watch: its client lists again.
                let notice = match notice {
                    Ok(notice) => notice,
                    Err(missed) => return Some(Err(KitError::from(missed).into())),
                };
                let notice: ChangeNotice = serde_json::from_str(&notice).ok()?;
                let concerned = notice.participants.contains(&identity.subject)
                    || (identity.has_role(Role::Coordinator) && identity.org == notice.org_id);
                let wanted = practitioner
                    .as_ref()
                    .is_none_or(|p| notice.participants.contains(p));
                if !concerned || !wanted {
                    return None;
                }
                Some(scheduler.change(&caller, &identity, &notice).await)
            }
        }))
    }

    async fn change(
        &self,
        caller: &Caller,
        identity: &Identity,
        notice: &ChangeNotice,
    ) -> Result<(HistoryEvent, Appointment), SchedulingError> {
        let mut conn = self.base.db().pool().acquire().await?;
        let appointment = store::appointment(&mut conn, &notice.appointment_id)
            .await?
            .filter(|a| can_see(identity, a))
            .ok_or(SchedulingError::NotFound("appointment"))?;
        let event = store::history(&mut conn, &notice.appointment_id, notice.sequence - 1, 1)
            .await?
            .pop()
            .ok_or(SchedulingError::NotFound("appointment event"))?;
        drop(conn);
        self.audit(
            caller,
            "WatchAppointments",
            "appointment",
            &appointment.id,
            Outcome::Ok,
        )
        .await;
        Ok((event, appointment))
    }

    /// Tells every replica's watchers that `appointment` changed, in the transaction of the
    /// change on `conn` (see [`telehealth_kit::events::EventBus::stage`]); send what this
    /// returns once the transaction has committed.
    pub(crate) async fn announce(
        &self,
        conn: &mut sqlx::AnyConnection,
        appointment: &Appointment,
        sequence: i64,
    ) -> Result<StagedEvent, SchedulingError> {
        let notice = ChangeNotice {
            appointment_id: appointment.id.clone(),
            org_id: appointment.org_id.clone(),
            participants: appointment.participants().map(str::to_owned).collect(),
            sequence,
        };
        let payload = serde_json::to_string(&notice)
            .map_err(|e| KitError::Config(format!("change notice not serialisable: {e}")))?;
        Ok(self.bus.stage(conn, payload).await?)
    }
}

/// "30 minutes", "1 minute".
fn minutes(duration: jiff::SignedDuration) -> String {
    let minutes = duration.as_mins();
    format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
}

/// "2027-01-12 09:30 (Europe/Paris, UTC+01)".
fn describe_local(zone: &crate::domain::Zone, at: jiff::Timestamp) -> String {
    let local = at.to_zoned_datetime(zone.tz().clone());
    format!(
        "{} ({}, UTC{})",
        local.strftime("%Y-%m-%d %H:%M"),
        zone.name(),
        local.offset()
    )
}

/// "from 2027-01-12 09:30 (Europe/Paris, UTC+01) to 2027-01-12 11:00 (Europe/Paris, UTC+01)
/// (UTC: 2027-01-12 08:30Z to 2027-01-12 10:00Z)".
fn describe_window(
    zone: &crate::domain::Zone,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> String {
    let utc = |at: jiff::Timestamp| at.strftime("%Y-%m-%d %H:%MZ").to_string();
    format!(
        "from {} to {} (UTC: {} to {})",
        describe_local(zone, from),
        describe_local(zone, to),
        utc(from),
        utc(to)
    )
}

fn action_name(transition: Transition) -> &'static str {
    match transition {
        Transition::CheckIn => "CheckIn",
        Transition::Start => "StartTeleconsultation",
        Transition::Finish => "FinishAppointment",
        Transition::Cancel => "CancelAppointment",
        Transition::NoShow => "MarkNoShow",
        Transition::Reschedule => "RescheduleAppointment",
    }
}
