//! The nurse's round and the doctor's follow-up list.

use jiff::Timestamp;
use sqlx::AnyConnection;
use telehealth_kit::{
    audit::Outcome,
    identity::{Caller, Role},
};

use super::{AssessmentView, WoundMonitor, person, views};
use crate::{
    error::WoundError,
    model::{Alert, Wound, WoundStatus},
    store::{
        self,
        wounds::{DoctorFilter, DoctorKey},
    },
};

/// Open alerts shown with a wound in a list.
const OPEN_ALERTS_SHOWN: i64 = 10;

/// A wound with what a round or a follow-up screen needs.
#[derive(Debug, Clone, PartialEq)]
pub struct WoundSummary {
    pub wound: Wound,
    pub last_assessment: Option<AssessmentView>,
    pub open_alerts: Vec<Alert>,
}

/// What the doctor's list covers.
#[derive(Debug, Clone, Default)]
pub struct DoctorListQuery {
    /// Empty: open wounds only.
    pub statuses: Vec<WoundStatus>,
    pub whole_org: bool,
    pub patient_pseudonym: Option<String>,
}

impl WoundMonitor {
    /// The caller's round: open wounds of her care teams by next due date (overdue first).
    pub async fn nurse_round(
        &self,
        caller: &Caller,
        due_before: Option<Timestamp>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<WoundSummary>, WoundError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let wounds =
            store::wounds::nurse_round(&mut conn, &identity.subject, due_before, after, limit)
                .await?;
        let mut found = Vec::with_capacity(wounds.len());
        for wound in wounds {
            found.push(summary(&mut conn, wound).await?);
        }
        drop(conn);
        for item in &found {
            self.audit(
                caller,
                "ListNurseRound",
                "wound",
                &item.wound.id,
                Outcome::Ok,
            )
            .await;
        }
        Ok(found)
    }

    /// The wounds the caller refers (or all wounds of his centre), open alerts first; each with
    /// its list position.
    pub async fn doctor_wounds(
        &self,
        caller: &Caller,
        query: DoctorListQuery,
        after: Option<DoctorKey>,
        limit: i64,
    ) -> Result<Vec<(WoundSummary, DoctorKey)>, WoundError> {
        let identity = person(caller)?;
        if !identity.has_role(Role::Doctor) {
            return Err(WoundError::PermissionDenied("this list is for doctors"));
        }
        let filter = DoctorFilter {
            referring_doctor: (!query.whole_org).then(|| identity.subject.clone()),
            org_id: query.whole_org.then(|| identity.org.clone()),
            statuses: if query.statuses.is_empty() {
                vec![WoundStatus::Open]
            } else {
                query.statuses
            },
            // Under every id that names the patient, as the doctor's organisation sees them.
            patients: match query.patient_pseudonym {
                Some(patient) => self.consents.ids_of(&identity.org, &patient).await?,
                None => Vec::new(),
            },
        };
        let mut conn = self.base.db().pool().acquire().await?;
        let wounds = store::wounds::doctor_wounds(&mut conn, &filter, after, limit).await?;
        let mut found = Vec::with_capacity(wounds.len());
        for (wound, key) in wounds {
            found.push((summary(&mut conn, wound).await?, key));
        }
        drop(conn);
        for (item, _) in &found {
            self.audit(
                caller,
                "ListDoctorWounds",
                "wound",
                &item.wound.id,
                Outcome::Ok,
            )
            .await;
        }
        Ok(found)
    }
}

/// A wound with its last assessment (and that assessment's figures) and its open alerts.
async fn summary(conn: &mut AnyConnection, wound: Wound) -> Result<WoundSummary, WoundError> {
    let last_assessment = match &wound.last_assessment_id {
        Some(_) => {
            let series =
                store::assessments::series(&mut *conn, &wound.id, Some(wound.episode)).await?;
            views(series).pop()
        }
        None => None,
    };
    let open_alerts = store::alerts::open_alerts(&mut *conn, &wound.id, OPEN_ALERTS_SHOWN).await?;
    Ok(WoundSummary {
        wound,
        last_assessment,
        open_alerts,
    })
}
