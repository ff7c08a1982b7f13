//! Technical incidents of teleconsultations (Code de la santé publique, art. R6316-4): reported
//! by the apps, detected by the server (drops, reconnections), read back per appointment.

use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    audit::{self, AuditEntry, Outcome},
    identity::{Caller, Role as TokenRole},
};

use crate::domain::AppointmentId;
use crate::{
    core::{Signalling, person},
    domain::{
        Incident, IncidentKind, IncidentReport, IncidentSource, MAX_DESCRIPTION_CHARS,
        MAX_PLATFORM_CHARS, Participant, Role, Room,
    },
    error::SignallingError,
    store,
};

/// How long after the end of a room's window its participants may still report.
const REPORTING_PERIOD: SignedDuration = SignedDuration::from_hours(24);
/// Clock skew tolerated on `occurred_at`.
const SKEW: SignedDuration = SignedDuration::from_mins(1);

/// A page of incidents and the position after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    /// Keyset position (occurred_at µs, incident id) of the last item, when there is more.
    pub next: Option<(i64, String)>,
}

impl Signalling {
    /// Records an incident a participant's app reports (`ReportTechnicalIncident`); a report
    /// already recorded under its `client_incident_id` returns the recorded incident.
    pub async fn report_incident(
        &self,
        caller: &Caller,
        appointment_id: &AppointmentId,
        report: IncidentReport,
    ) -> Result<Incident, SignallingError> {
        let result = async {
            let identity = person(caller)?;
            let mut conn = self.db().pool().acquire().await?;
            let room = store::room_of_appointment(&mut conn, appointment_id)
                .await?
                .ok_or(SignallingError::PermissionDenied(
                    "you are not a participant of this appointment's room",
                ))?;
            drop(conn);
            let me = room.participant(&identity.subject).cloned().ok_or(
                SignallingError::PermissionDenied(
                    "you are not a participant of this appointment's room",
                ),
            )?;
            if self.now() > room.admission.end + REPORTING_PERIOD {
                return Err(SignallingError::FailedPrecondition(
                    "incidents can be reported up to 24 hours after the room's window".into(),
                ));
            }
            self.record_report(caller, &room, &me, report).await
        }
        .await;
        if let Err(error) = &result {
            self.audit(
                caller,
                "ReportTechnicalIncident",
                "appointment",
                appointment_id,
                Outcome::of(error),
            )
            .await;
        }
        result
    }

    /// Records a report for `me` in `room` (from the RPC or from the stream).
    pub(crate) async fn record_report(
        &self,
        caller: &Caller,
        room: &Room,
        me: &Participant,
        report: IncidentReport,
    ) -> Result<Incident, SignallingError> {
        let now = self.now();
        if report.occurred_at > now + SKEW {
            return Err(SignallingError::invalid(
                "occurred_at",
                "must not be in the future",
            ));
        }
        if report.occurred_at < room.admission.start {
            return Err(SignallingError::invalid(
                "occurred_at",
                "must not be before the room's admission window",
            ));
        }
        if report.duration_seconds < 0 {
            return Err(SignallingError::invalid(
                "duration_seconds",
                "must not be negative",
            ));
        }
        if report.kind == IncidentKind::OTHER && report.description.is_empty() {
            return Err(SignallingError::invalid(
                "description",
                "is required for INCIDENT_KIND_OTHER",
            ));
        }
        if report.description.chars().count() > MAX_DESCRIPTION_CHARS
            || report.client_platform.chars().count() > MAX_PLATFORM_CHARS
        {
            return Err(SignallingError::invalid(
                "description",
                format!(
                    "at most {MAX_DESCRIPTION_CHARS} characters (client_platform {MAX_PLATFORM_CHARS})"
                ),
            ));
        }
        let incident = Incident {
            incident_id: uuid::Uuid::now_v7().to_string(),
            appointment_id: room.appointment_id.clone(),
            room_id: room.room_id.clone(),
            participant_subject: me.subject.clone(),
            participant_role: me.role,
            source: IncidentSource::ClientReported,
            kind: report.kind,
            occurred_at: report.occurred_at,
            recorded_at: now,
            duration_seconds: report.duration_seconds,
            description: report.description,
            network_type: report.network_type,
            client_platform: report.client_platform,
            client_incident_id: Some(report.client_incident_id.clone()),
        };
        // Insert first (a write takes the write lock at once); a report already recorded
        // under this id, also concurrently (stream and RPC at once), is returned instead.
        let mut tx = self.db().pool().begin().await?;
        if !store::insert_incident(&mut tx, &incident).await? {
            let recorded = store::reported_incident(
                &mut tx,
                &room.appointment_id,
                &me.subject,
                &report.client_incident_id,
            )
            .await?
            .ok_or(SignallingError::Internal(
                "a conflicting incident report vanished".into(),
            ))?;
            drop(tx);
            self.audit(
                caller,
                "ReportTechnicalIncident",
                "incident",
                &recorded.incident_id,
                Outcome::Ok,
            )
            .await;
            return Ok(recorded);
        }
        let entry = AuditEntry::new(
            caller,
            "ReportTechnicalIncident",
            "incident",
            &incident.incident_id,
            Outcome::Ok,
        );
        audit::append(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(incident)
    }

    /// An incident the server detected (a drop, a reconnection), to record.
    pub(crate) fn detected_incident(
        &self,
        room: &Room,
        me: &Participant,
        kind: IncidentKind,
        occurred_at: Timestamp,
        description: String,
        client_platform: &str,
    ) -> Incident {
        Incident {
            incident_id: uuid::Uuid::now_v7().to_string(),
            appointment_id: room.appointment_id.clone(),
            room_id: room.room_id.clone(),
            participant_subject: me.subject.clone(),
            participant_role: me.role,
            source: IncidentSource::ServerDetected,
            kind,
            occurred_at,
            recorded_at: self.now(),
            duration_seconds: 0,
            description,
            network_type: 0,
            client_platform: client_platform.to_owned(),
            client_incident_id: None,
        }
    }

    /// The incidents of an appointment, for its doctor and nurse and its org's coordinators.
    pub async fn list_incidents(
        &self,
        caller: &Caller,
        appointment_id: &AppointmentId,
        page_size: i64,
        after: Option<(i64, String)>,
    ) -> Result<IncidentPage, SignallingError> {
        let result = async {
            let identity = person(caller)?;
            let not_found = SignallingError::NotFound("technical incidents of this appointment");
            let mut conn = self.db().pool().acquire().await?;
            let Some(room) = store::room_of_appointment(&mut conn, appointment_id).await? else {
                return Err(not_found);
            };
            let clinician = room
                .participant(&identity.subject)
                .is_some_and(|p| matches!(p.role, Role::Doctor | Role::Nurse));
            let coordinator =
                identity.has_role(TokenRole::Coordinator) && identity.org == room.org_id;
            if !clinician && !coordinator {
                return Err(not_found);
            }
            let mut incidents =
                store::incidents(&mut conn, appointment_id, after, page_size + 1).await?;
            let more = incidents.len() > usize::try_from(page_size).unwrap_or(0);
            incidents.truncate(usize::try_from(page_size).unwrap_or(0));
            let next = more
                .then(|| incidents.last())
                .flatten()
                .map(|i| (store::micros(i.occurred_at), i.incident_id.clone()));
            Ok(IncidentPage { incidents, next })
        }
        .await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(
            caller,
            "ListTechnicalIncidents",
            "appointment",
            appointment_id,
            outcome,
        )
        .await;
        result
    }
}

#[cfg(test)]
mod tests {
    use telehealth_kit::identity::Role as TokenRole;

    use super::*;
    use crate::{
        core::testing::{TestCore, person, scheduling, start_instant},
        domain::{Admitted, RoomSpec, Window},
    };
    use telehealth_kit::config::SignallingSettings;

    async fn room(t: &TestCore) -> String {
        let appointment = uuid::Uuid::new_v4().to_string();
        let spec = RoomSpec::new(
            appointment.clone(),
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
                start: start_instant(),
                end: start_instant() + SignedDuration::from_mins(30),
            },
        )
        .expect("spec");
        t.core.open_room(&scheduling(), spec).await.expect("opens");
        appointment
    }

    fn report(id: &str, minutes_ago: i64) -> IncidentReport {
        IncidentReport {
            client_incident_id: id.into(),
            kind: IncidentKind::CONNECTION_FAILED,
            occurred_at: start_instant() - SignedDuration::from_mins(minutes_ago),
            duration_seconds: 12,
            description: "la 4G ne passe pas".into(),
            network_type: 2,
            client_platform: "Android 14; telehealth-app 2.3.1".into(),
        }
    }

    #[tokio::test]
    async fn a_report_is_recorded_once_and_read_back_by_the_doctor_and_coordinators_only() {
        let t = TestCore::new(SignallingSettings::default()).await;
        let appointment = room(&t).await;
        let patient = person("pat-7f3a", TokenRole::Patient, "cds-bourganeuf");
        let id = uuid::Uuid::new_v4().to_string();
        let first = t
            .core
            .report_incident(
                &patient,
                &AppointmentId::known(appointment.clone()),
                report(&id, 5),
            )
            .await
            .expect("recorded");
        let retry = t
            .core
            .report_incident(
                &patient,
                &AppointmentId::known(appointment.clone()),
                report(&id, 5),
            )
            .await
            .expect("retried");
        assert_eq!(first, retry, "a retry returns the recorded incident");

        let readers = [
            (
                person("dr-martin", TokenRole::Doctor, "cds-bourganeuf"),
                true,
                "the doctor",
            ),
            (
                person("coord", TokenRole::Coordinator, "cds-bourganeuf"),
                true,
                "a coordinator of the org",
            ),
            (
                person("coord", TokenRole::Coordinator, "cds-aubusson"),
                false,
                "a coordinator of another org",
            ),
            (
                person("dr-other", TokenRole::Doctor, "cds-bourganeuf"),
                false,
                "another doctor",
            ),
        ];
        for (reader, allowed, who) in readers {
            let listed = t
                .core
                .list_incidents(
                    &reader,
                    &AppointmentId::known(appointment.clone()),
                    100,
                    None,
                )
                .await;
            match listed {
                Ok(page) => {
                    assert!(allowed, "{who} must not read");
                    assert_eq!(page.incidents, vec![first.clone()], "{who}");
                }
                Err(error) => {
                    assert!(!allowed, "{who}: {error}");
                    assert!(matches!(error, SignallingError::NotFound(_)), "{who}");
                }
            }
        }
        t.cleanup().await;
    }

    #[tokio::test]
    async fn reports_out_of_time_or_incomplete_are_refused() {
        let t = TestCore::new(SignallingSettings::default()).await;
        let appointment = room(&t).await;
        let patient = person("pat-7f3a", TokenRole::Patient, "cds-bourganeuf");
        let id = || uuid::Uuid::new_v4().to_string();
        let cases = [
            (report(&id(), -5), "in the future"),
            (report(&id(), 45), "before the window (opens 09:30)"),
            (
                IncidentReport {
                    kind: IncidentKind::OTHER,
                    description: String::new(),
                    ..report(&id(), 1)
                },
                "OTHER without a description",
            ),
        ];
        for (bad, case) in cases {
            let error = t
                .core
                .report_incident(&patient, &AppointmentId::known(appointment.clone()), bad)
                .await
                .expect_err(case);
            assert!(
                matches!(error, SignallingError::InvalidArgument { .. }),
                "{case}: {error}"
            );
        }
        t.set_now(start_instant() + SignedDuration::from_hours(26));
        let late = t
            .core
            .report_incident(
                &patient,
                &AppointmentId::known(appointment.clone()),
                report(&id(), 1),
            )
            .await
            .expect_err("too late");
        assert!(matches!(late, SignallingError::FailedPrecondition(_)));
        t.cleanup().await;
    }

    #[tokio::test]
    async fn incidents_are_listed_in_pages_ordered_by_time() {
        let t = TestCore::new(SignallingSettings::default()).await;
        let appointment = room(&t).await;
        let patient = person("pat-7f3a", TokenRole::Patient, "cds-bourganeuf");
        for minutes_ago in [3, 20, 7, 1, 12] {
            t.core
                .report_incident(
                    &patient,
                    &AppointmentId::known(appointment.clone()),
                    report(&uuid::Uuid::new_v4().to_string(), minutes_ago),
                )
                .await
                .expect("recorded");
        }
        let doctor = person("dr-martin", TokenRole::Doctor, "cds-bourganeuf");
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = t
                .core
                .list_incidents(
                    &doctor,
                    &AppointmentId::known(appointment.clone()),
                    2,
                    after,
                )
                .await
                .expect("page");
            assert!(page.incidents.len() <= 2);
            seen.extend(page.incidents.iter().map(|i| i.occurred_at));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen.len(), 5);
        assert_eq!(seen, sorted, "ordered by occurred_at");
        t.cleanup().await;
    }
}
