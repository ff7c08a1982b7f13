//! Rooms: opened and closed by scheduling, entered by their participants inside the admission
//! window, and the ICE servers handed to them.

use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    Part,
    audit::{self, AuditEntry, Outcome},
    identity::Caller,
};

use crate::domain::{AppointmentId, RoomId};
use crate::{
    core::{Signalling, person},
    domain::{CloseReason, IceServerSet, Participant, Room, RoomSpec, Window},
    error::SignallingError,
    store, turn,
};

/// What `OpenRoom` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub room: Room,
    pub created: bool,
}

/// What `CloseRoom` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub room_id: String,
    pub closed: bool,
    pub closed_at: Timestamp,
}

fn only_scheduling(caller: &Caller) -> Result<(), SignallingError> {
    match caller {
        Caller::Service(Part::Scheduling) => Ok(()),
        _ => Err(SignallingError::PermissionDenied(
            "only the scheduling service opens and closes rooms",
        )),
    }
}

impl Signalling {
    /// Opens the room of an appointment, or updates the existing one (idempotent per
    /// appointment; a participant keeps his id; a closed room is never reopened).
    pub async fn open_room(
        &self,
        caller: &Caller,
        spec: RoomSpec,
    ) -> Result<Opened, SignallingError> {
        let result = async {
            only_scheduling(caller)?;
            self.open_room_once(caller, &spec).await
        }
        .await;
        if let Err(error) = &result {
            self.audit(
                caller,
                "OpenRoom",
                "appointment",
                &spec.appointment_id,
                Outcome::of(error),
            )
            .await;
        }
        result
    }

    async fn open_room_once(
        &self,
        caller: &Caller,
        spec: &RoomSpec,
    ) -> Result<Opened, SignallingError> {
        let now = self.now();
        let admission = Window {
            start: spec.scheduled.start - self.inner.margins.before,
            end: spec.scheduled.end + self.inner.margins.after,
        };
        let mut room = Room {
            room_id: uuid::Uuid::new_v4().to_string(),
            appointment_id: spec.appointment_id.clone(),
            org_id: spec.org_id.clone(),
            scheduled: spec.scheduled,
            admission,
            closed: None,
            participants: Vec::new(),
        };
        let mut tx = self.db().pool().begin().await?;
        // The insert comes first: it is a no-op for an appointment that has its room, and as a
        // write it queues concurrent calls (and never leaves SQLite a read to upgrade).
        let created = store::insert_room(&mut tx, &room, now).await?;
        let existing = store::room_of_appointment(&mut tx, &spec.appointment_id)
            .await?
            .ok_or(SignallingError::Internal(
                "the room of the appointment vanished".into(),
            ))?;
        if existing.closed.is_some() {
            return Err(SignallingError::FailedPrecondition(
                "the room of this appointment was closed; a closed room is never reopened".into(),
            ));
        }
        room.room_id = existing.room_id;
        let old_participants = existing.participants;
        if !created {
            store::update_room(&mut tx, &room, now).await?;
        }
        for old in &old_participants {
            if !spec.participants.iter().any(|p| p.subject == old.subject) {
                store::remove_participant(&mut tx, &old.participant_id).await?;
            }
        }
        for wanted in &spec.participants {
            let participant = match old_participants
                .iter()
                .find(|o| o.subject == wanted.subject)
            {
                Some(old) => {
                    if old.role != wanted.role {
                        store::update_participant_role(&mut tx, &old.participant_id, wanted.role)
                            .await?;
                    }
                    Participant {
                        role: wanted.role,
                        ..old.clone()
                    }
                }
                None => {
                    let participant = Participant {
                        participant_id: uuid::Uuid::new_v4().to_string(),
                        subject: wanted.subject.clone(),
                        role: wanted.role,
                    };
                    store::insert_participant(&mut tx, &room.room_id, &participant).await?;
                    participant
                }
            };
            room.participants.push(participant);
        }
        let entry = AuditEntry::new(caller, "OpenRoom", "room", &room.room_id, Outcome::Ok);
        audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        tracing::info!(room_id = %room.room_id, appointment_id = %room.appointment_id, created, "room opened");
        Ok(Opened { room, created })
    }

    /// Closes the room of an appointment: connected participants get `room_closed`, nobody can
    /// join any more. Closing a closed room changes nothing.
    pub async fn close_room(
        &self,
        caller: &Caller,
        appointment_id: &AppointmentId,
        reason: CloseReason,
    ) -> Result<Closed, SignallingError> {
        let result = async {
            only_scheduling(caller)?;
            let mut conn = self.db().pool().acquire().await?;
            let room = store::room_of_appointment(&mut conn, appointment_id)
                .await?
                .ok_or(SignallingError::NotFound("room"))?;
            drop(conn);
            self.close(caller, &room, reason).await
        }
        .await;
        if let Err(error) = &result {
            self.audit(
                caller,
                "CloseRoom",
                "appointment",
                appointment_id,
                Outcome::of(error),
            )
            .await;
        }
        result
    }

    async fn close(
        &self,
        caller: &Caller,
        room: &Room,
        reason: CloseReason,
    ) -> Result<Closed, SignallingError> {
        if let Some((closed_at, _)) = room.closed {
            return Ok(Closed {
                room_id: room.room_id.clone(),
                closed: false,
                closed_at,
            });
        }
        let now = self.now();
        let mut tx = self.db().pool().begin().await?;
        let closed = store::close_room(&mut tx, &room.room_id, now, reason).await?;
        if !closed {
            // Closed meanwhile by another call.
            drop(tx);
            let mut conn = self.db().pool().acquire().await?;
            let closed_at = store::room(&mut conn, &room.room_id)
                .await?
                .and_then(|r| r.closed)
                .map_or(now, |(at, _)| at);
            return Ok(Closed {
                room_id: room.room_id.clone(),
                closed: false,
                closed_at,
            });
        }
        store::delete_room_connections(&mut tx, &room.room_id).await?;
        let detail = format!("{reason:?}").to_lowercase();
        store::log(
            &mut tx,
            &store::LogEntry {
                room_id: &room.room_id,
                at: now,
                kind: "closed",
                participant_id: "",
                connection_id: "",
                detail: &detail,
            },
        )
        .await?;
        let entry = AuditEntry::new(caller, "CloseRoom", "room", &room.room_id, Outcome::Ok);
        audit::append(&mut tx, &entry).await?;
        let closing = self
            .hub()
            .stage_closed(&mut tx, &room.room_id, reason)
            .await?;
        tx.commit().await?;
        closing.send();
        tracing::info!(room_id = %room.room_id, ?reason, "room closed");
        Ok(Closed {
            room_id: room.room_id.clone(),
            closed: true,
            closed_at: now,
        })
    }

    /// Closes the rooms still open `auto_close_after_minutes` after their window ended.
    pub(crate) async fn close_expired_rooms(&self) -> Result<usize, SignallingError> {
        let grace = SignedDuration::from_mins(i64::from(self.settings().auto_close_after_minutes));
        let before = self.now() - grace;
        let mut conn = self.db().pool().acquire().await?;
        let expired = store::open_rooms_closing_before(&mut conn, before).await?;
        let mut count = 0;
        for room_id in expired {
            if let Some(room) = store::room(&mut conn, &room_id).await? {
                let caller = Caller::Service(Part::Signalling);
                if self
                    .close(&caller, &room, CloseReason::Expired)
                    .await?
                    .closed
                {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// The room `room_id` and the caller's place in it, if the caller may use it now:
    /// PERMISSION_DENIED for a non-participant or an unknown room (indistinguishable),
    /// FAILED_PRECONDITION for a closed room or outside the admission window.
    pub(crate) async fn admit(
        &self,
        caller: &Caller,
        room_id: &str,
    ) -> Result<(Room, Participant), SignallingError> {
        let identity = person(caller)?;
        let mut conn = self.db().pool().acquire().await?;
        let room = store::room(&mut conn, room_id)
            .await?
            .ok_or_else(SignallingError::not_admitted)?;
        let me = room
            .participant(&identity.subject)
            .cloned()
            .ok_or_else(SignallingError::not_admitted)?;
        if room.closed.is_some() {
            return Err(SignallingError::FailedPrecondition(
                "the room is closed".into(),
            ));
        }
        let now = self.now();
        if !room.admission.contains(now) {
            return Err(SignallingError::FailedPrecondition(format!(
                "the room admits participants from {} to {}",
                room.admission.start, room.admission.end
            )));
        }
        Ok((room, me))
    }

    /// Fresh ICE servers for the caller in room `room_id` (`GetIceServers`).
    pub async fn ice_servers_for(
        &self,
        caller: &Caller,
        room_id: &RoomId,
    ) -> Result<IceServerSet, SignallingError> {
        let result = self.admit(caller, room_id).await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "GetIceServers", "room", room_id, outcome)
            .await;
        let (room, me) = result?;
        Ok(self.ice_servers(&room, &me))
    }

    /// ICE servers for `me`, credentials expiring no later than the room's window.
    pub(crate) fn ice_servers(&self, room: &Room, me: &Participant) -> IceServerSet {
        turn::ice_servers(
            self.settings(),
            &me.participant_id,
            self.now(),
            room.admission.end,
        )
    }
}

#[cfg(test)]
mod tests {
    use telehealth_kit::identity::Role as TokenRole;

    use super::*;
    use crate::{
        core::testing::{TestCore, person, scheduling, start_instant},
        domain::{Admitted, Role},
    };
    use telehealth_kit::config::SignallingSettings;

    pub fn spec(appointment_id: &str, start: Timestamp) -> RoomSpec {
        RoomSpec::new(
            appointment_id.into(),
            "cds-bourganeuf".into(),
            vec![
                Admitted {
                    subject: "dr-martin".into(),
                    role: Role::Doctor,
                },
                Admitted {
                    subject: "pat-7f3a".into(),
                    role: Role::Patient,
                },
            ],
            Window {
                start,
                end: start + SignedDuration::from_mins(30),
            },
        )
        .expect("valid spec")
    }

    #[tokio::test]
    async fn opening_twice_returns_the_same_room_and_keeps_participant_ids() {
        let t = TestCore::new(SignallingSettings::default()).await;
        let appointment = uuid::Uuid::new_v4().to_string();
        let first = t
            .core
            .open_room(&scheduling(), spec(&appointment, start_instant()))
            .await
            .expect("opens");
        assert!(first.created);
        let mut changed = spec(
            &appointment,
            start_instant() + SignedDuration::from_hours(1),
        );
        changed.participants.push(Admitted {
            subject: "nurse-claire".into(),
            role: Role::Nurse,
        });
        let second = t
            .core
            .open_room(&scheduling(), changed)
            .await
            .expect("reopens");
        assert!(!second.created);
        assert_eq!(second.room.room_id, first.room.room_id);
        assert_eq!(
            second.room.participant("dr-martin"),
            first.room.participant("dr-martin"),
            "the doctor keeps his participant id"
        );
        assert!(second.room.participant("nurse-claire").is_some());
        assert_eq!(
            second.room.admission.start,
            start_instant() + SignedDuration::from_mins(30),
            "the window follows the new time"
        );
        t.cleanup().await;
    }

    #[tokio::test]
    async fn concurrent_openings_of_one_appointment_give_one_room_on_both_backends() {
        for t in TestCore::each_backend(SignallingSettings::default()).await {
            let backend = t.database.backend();
            let appointment = uuid::Uuid::new_v4().to_string();
            let calls: Vec<_> = (0..10)
                .map(|_| {
                    let core = t.core.clone();
                    let spec = spec(&appointment, start_instant());
                    tokio::spawn(async move { core.open_room(&scheduling(), spec).await })
                })
                .collect();
            let mut rooms = Vec::new();
            let mut created = 0;
            for call in calls {
                let opened = call.await.expect("no panic").expect("opens");
                created += usize::from(opened.created);
                rooms.push(opened.room.room_id);
            }
            rooms.dedup();
            assert_eq!(rooms.len(), 1, "{backend:?}: one room");
            assert_eq!(created, 1, "{backend:?}: created once");
            t.cleanup().await;
        }
    }

    #[tokio::test]
    async fn only_scheduling_opens_and_a_closed_room_is_never_reopened() {
        let t = TestCore::new(SignallingSettings::default()).await;
        let appointment = uuid::Uuid::new_v4().to_string();
        let doctor = person("dr-martin", TokenRole::Doctor, "cds-bourganeuf");
        let refused = t
            .core
            .open_room(&doctor, spec(&appointment, start_instant()))
            .await
            .expect_err("a person cannot open a room");
        assert!(matches!(refused, SignallingError::PermissionDenied(_)));
        t.core
            .open_room(&scheduling(), spec(&appointment, start_instant()))
            .await
            .expect("opens");
        let closed = t
            .core
            .close_room(
                &scheduling(),
                &AppointmentId::known(appointment.clone()),
                CloseReason::Finished,
            )
            .await
            .expect("closes");
        assert!(closed.closed);
        let again = t
            .core
            .close_room(
                &scheduling(),
                &AppointmentId::known(appointment.clone()),
                CloseReason::Finished,
            )
            .await
            .expect("closing again is a no-op");
        assert!(!again.closed);
        assert_eq!(again.closed_at, closed.closed_at);
        let reopen = t
            .core
            .open_room(&scheduling(), spec(&appointment, start_instant()))
            .await
            .expect_err("closed for good");
        assert!(matches!(reopen, SignallingError::FailedPrecondition(_)));
        let unknown = t
            .core
            .close_room(
                &scheduling(),
                &AppointmentId::known(uuid::Uuid::new_v4().to_string()),
                CloseReason::Finished,
            )
            .await
            .expect_err("no room");
        assert!(matches!(unknown, SignallingError::NotFound(_)));
        t.cleanup().await;
    }

    #[tokio::test]
    async fn admission_follows_the_window_and_the_participants() {
        let t = TestCore::new(SignallingSettings::default()).await;
        let appointment = uuid::Uuid::new_v4().to_string();
        // Starts at 10:00; the window is 09:30 to 11:30.
        let room = t
            .core
            .open_room(&scheduling(), spec(&appointment, start_instant()))
            .await
            .expect("opens")
            .room;
        let patient = person("pat-7f3a", TokenRole::Patient, "cds-bourganeuf");
        let stranger = person("pat-other", TokenRole::Patient, "cds-bourganeuf");
        let cases = [
            (
                &patient,
                "09:29:59",
                Some("precondition"),
                "just before the window",
            ),
            (&patient, "09:30:00", None, "at the opening"),
            (&patient, "11:29:59", None, "just before the end"),
            (&patient, "11:30:00", Some("precondition"), "at the end"),
            (&stranger, "10:00:00", Some("denied"), "not a participant"),
        ];
        for (caller, time, refusal, case) in cases {
            t.set_now(format!("2030-01-15T{time}Z").parse().expect("instant"));
            let result = t.core.admit(caller, &room.room_id).await;
            let got = match result {
                Ok(_) => None,
                Err(SignallingError::FailedPrecondition(_)) => Some("precondition"),
                Err(SignallingError::PermissionDenied(_)) => Some("denied"),
                Err(other) => panic!("{case}: unexpected {other}"),
            };
            assert_eq!(got, refusal, "{case}");
        }
        t.set_now(start_instant());
        let unknown = t
            .core
            .admit(&patient, &uuid::Uuid::new_v4().to_string())
            .await
            .expect_err("unknown room");
        let stranger_error = t
            .core
            .admit(&stranger, &room.room_id)
            .await
            .expect_err("stranger");
        assert_eq!(
            unknown.to_string(),
            stranger_error.to_string(),
            "an unknown room and a room one is not admitted to look the same"
        );
        t.cleanup().await;
    }

    #[tokio::test]
    async fn rooms_left_open_close_by_themselves_after_the_grace_period() {
        let t = TestCore::new(SignallingSettings::default()).await;
        let appointment = uuid::Uuid::new_v4().to_string();
        t.core
            .open_room(&scheduling(), spec(&appointment, start_instant()))
            .await
            .expect("opens");
        // Window ends 11:30; closed automatically after 15:30.
        t.set_now("2030-01-15T15:29:00Z".parse().expect("instant"));
        assert_eq!(
            t.core.close_expired_rooms().await.expect("sweep"),
            0,
            "not yet expired"
        );
        t.set_now("2030-01-15T15:31:00Z".parse().expect("instant"));
        // The service's own maintenance task may sweep first; either way the room is closed once.
        assert!(t.core.close_expired_rooms().await.expect("sweep") <= 1);
        let mut conn = t.database.db.pool().acquire().await.expect("conn");
        let room = store::room_of_appointment(&mut conn, &appointment)
            .await
            .expect("read")
            .expect("room");
        assert_eq!(room.closed.map(|(_, r)| r), Some(CloseReason::Expired));
        drop(conn);
        t.cleanup().await;
    }
}
