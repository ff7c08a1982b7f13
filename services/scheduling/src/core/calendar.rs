//! iCalendar export of a practitioner's appointments.

use telehealth_kit::{
    audit::Outcome,
    identity::{Caller, Role},
};

use super::{PRACTITIONER_ROLES, Scheduler, person};
use crate::{
    domain::{Interval, Subject, Zone},
    error::SchedulingError,
    ical::{self, CalendarEvent},
    model::Status,
    store::{self, AppointmentFilter},
};

impl Scheduler {
    /// The appointments of `practitioner` overlapping `range` as an RFC 5545 calendar; returns
    /// the text and the number of events.
    pub async fn export_calendar(
        &self,
        caller: &Caller,
        practitioner: &Subject,
        range: Interval,
        include_cancelled: bool,
        include_patient_details: bool,
    ) -> Result<(String, usize), SchedulingError> {
        let identity = person(caller)?;
        let own = practitioner.as_str() == identity.subject;
        // The practitioner himself, or a coordinator of an org he is a member of; anyone else
        // gets the answer of an unknown practitioner, published availability or not.
        if !own {
            if !identity.has_role(Role::Coordinator) {
                return Err(SchedulingError::NotFound("practitioner"));
            }
            self.require_member(
                identity,
                practitioner.as_str(),
                &PRACTITIONER_ROLES,
                "practitioner",
            )
            .await?;
        }
        let mut conn = self.base.db().pool().acquire().await?;
        let availability = store::availability_of(&mut conn, practitioner.as_str()).await?;
        let zone = match &availability {
            Some(a) => Zone::parse("time_zone", &a.time_zone)?,
            None => Zone::paris(),
        };
        let mut events = Vec::new();
        let mut after = None;
        loop {
            let filter = AppointmentFilter {
                // A coordinator sees the practitioner's appointments of the coordinator's org.
                org_id: (!own).then(|| identity.org.clone()),
                participant: Some(practitioner.as_str().to_owned()),
                window: Some(range),
                ..Default::default()
            };
            let page = store::list_appointments(&mut conn, &filter, after.clone(), 500).await?;
            let last = page
                .last()
                .map(|a| (store::micros(a.time.start), a.id.clone()));
            for appointment in page {
                if appointment.status == Status::Cancelled && !include_cancelled {
                    continue;
                }
                let description = include_patient_details.then(|| {
                    format!(
                        "Patient {} — {}",
                        appointment.patient_pseudonym, appointment.reason
                    )
                });
                events.push(CalendarEvent {
                    uid: appointment.id.clone(),
                    start: appointment.time.start,
                    end: appointment.time.end,
                    summary: "Téléconsultation".to_owned(),
                    description,
                    cancelled: appointment.status == Status::Cancelled,
                    sequence: u32::try_from(appointment.reschedule_count).unwrap_or(u32::MAX),
                    last_modified: appointment.updated_at,
                });
            }
            match last {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        drop(conn);
        let name = format!("Téléconsultations {practitioner}");
        let text = ical::export(&name, zone.name(), zone.tz(), &events, self.now());
        self.audit(
            caller,
            "ExportCalendar",
            "calendar",
            practitioner.as_str(),
            Outcome::Ok,
        )
        .await;
        Ok((text, events.len()))
    }
}
