//! Alerts to the referring doctor: raised once per cause and occurrence (the database's unique
//! dedupe key decides, across corrections, retries and replicas), listed, acknowledged and
//! streamed to watchers on every replica.

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use telehealth_kit::{
    KitError,
    audit::{AuditEntry, Outcome},
    events::StagedEvent,
    identity::{Caller, Identity},
};

use super::{WoundMonitor, person};
use crate::model::{AlertId, WoundId};
use crate::{
    error::WoundError,
    model::{Access, Acknowledgement, Alert, AlertStatus, Wound},
    scoring::AlertDraft,
    store::{self, alerts::AlertFilter},
};
use telehealth_kit::record::ActorRecord;

/// What happened to an alert (the contract's `AlertEventKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertEventKind {
    Raised = 1,
    Acknowledged = 2,
}

/// What the event bus carries for an alert (enough to route it; watchers read the alert itself
/// from the database).
#[derive(Debug, Serialize, Deserialize)]
struct AlertNotice {
    alert_id: String,
    wound_id: String,
    kind: AlertEventKind,
    /// The wound's referring doctor and care team when it happened.
    followers: Vec<String>,
}

/// Stores the alerts of `drafts` that were not raised before for `wound`, inside the caller's
/// transaction; returns those newly raised. A closed wound raises nothing.
pub(crate) async fn raise(
    conn: &mut AnyConnection,
    wound: &Wound,
    drafts: Vec<AlertDraft>,
    now: Timestamp,
    due_at: Option<Timestamp>,
) -> Result<Vec<Alert>, WoundError> {
    if wound.status != crate::model::WoundStatus::Open {
        return Ok(Vec::new());
    }
    let mut raised = Vec::new();
    for draft in drafts {
        let alert = Alert {
            id: uuid::Uuid::new_v4().to_string(),
            wound_id: wound.id.clone(),
            patient_pseudonym: wound.patient_pseudonym.clone(),
            cause: draft.cause,
            status: AlertStatus::Open,
            raised_at: now,
            recipient_doctor: wound.referring_doctor.clone(),
            assessment_id: draft.assessment_id,
            compared_assessment_id: draft.compared_assessment_id,
            previous_value: draft.previous_value,
            current_value: draft.current_value,
            threshold: draft.threshold,
            due_at: due_at.filter(|_| draft.cause == crate::domain::AlertCause::AssessmentOverdue),
            summary: draft.summary,
            acknowledgement: None,
        };
        if store::alerts::insert_alert(conn, &alert, &draft.dedupe_key).await? {
            raised.push(alert);
        }
    }
    if !raised.is_empty() {
        store::wounds::refresh_open_alert_marker(conn, &wound.id).await?;
    }
    Ok(raised)
}

impl WoundMonitor {
    /// Stages, in the transaction that raises them, the audit records of `alerts` raised by the
    /// service itself and their notices to watchers; send the notices with
    /// [`Self::announce_raised`] once it has committed.
    pub(crate) async fn stage_raised(
        &self,
        tx: &mut AnyConnection,
        wound: &Wound,
        alerts: &[Alert],
    ) -> Result<Vec<StagedEvent>, WoundError> {
        let service = Caller::Service(telehealth_kit::Part::Wound);
        let mut notices = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let entry = AuditEntry::new(&service, "RaiseAlert", "alert", &alert.id, Outcome::Ok);
            telehealth_kit::audit::stage(tx, &entry).await?;
            notices.push(
                self.stage_notice(tx, wound, &alert.id, AlertEventKind::Raised)
                    .await?,
            );
        }
        Ok(notices)
    }

    /// After the commit (and the audit flush): counts `alerts` and sends their `notices`,
    /// staged by [`Self::stage_raised`].
    pub(crate) fn announce_raised(
        &self,
        wound: &Wound,
        alerts: &[Alert],
        notices: Vec<StagedEvent>,
    ) {
        for alert in alerts {
            if let Some(raised) = &self.alerts_raised {
                raised.add(
                    1,
                    &[telehealth_kit::metrics::KeyValue::new(
                        "cause",
                        alert.cause.label(),
                    )],
                );
            }
            tracing::info!(alert_id = %alert.id, wound_id = %wound.id, cause = ?alert.cause, "alert raised");
        }
        notices.into_iter().for_each(StagedEvent::send);
    }

    /// Stages the notice of `kind` about an alert of `wound` in the transaction on `conn`: it
    /// reaches every replica's watchers when that commits, and never for a change rolled back.
    async fn stage_notice(
        &self,
        conn: &mut AnyConnection,
        wound: &Wound,
        alert_id: &str,
        kind: AlertEventKind,
    ) -> Result<StagedEvent, WoundError> {
        let mut followers = wound.nurses.clone();
        followers.push(wound.referring_doctor.clone());
        let notice = AlertNotice {
            alert_id: alert_id.to_owned(),
            wound_id: wound.id.clone(),
            kind,
            followers,
        };
        let payload = serde_json::to_string(&notice)
            .map_err(|e| KitError::Config(format!("alert notice not serialisable: {e}")))?;
        Ok(self.bus.stage(conn, payload).await?)
    }

    /// Alerts of one wound, or of every wound the caller refers or nurses, newest first, after
    /// the keyset `after`.
    pub async fn alerts(
        &self,
        caller: &Caller,
        wound_id: Option<&WoundId>,
        statuses: Vec<AlertStatus>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Alert>, WoundError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let mut filter = AlertFilter {
            statuses,
            ..AlertFilter::default()
        };
        match wound_id {
            Some(id) => {
                let visible = self.wound_for(&mut conn, identity, id, Access::Read).await;
                if let Err(error) = visible {
                    drop(conn);
                    self.audit(caller, "ListAlerts", "wound", id, Outcome::of(&error))
                        .await;
                    return Err(error);
                }
                filter.wound_id = Some(id.to_string());
            }
            None => filter.follower = Some(identity.subject.clone()),
        }
        let found = store::alerts::list_alerts(&mut conn, &filter, after, limit).await?;
        drop(conn);
        for alert in &found {
            self.audit(caller, "ListAlerts", "alert", &alert.id, Outcome::Ok)
                .await;
        }
        Ok(found)
    }

    /// Acknowledges an alert with a comment; the same caller retrying gets it unchanged.
    pub async fn acknowledge(
        &self,
        caller: &Caller,
        alert_id: &AlertId,
        comment: String,
    ) -> Result<Alert, WoundError> {
        let result = self.acknowledge_inner(caller, alert_id, comment).await;
        self.audit_change(caller, "AcknowledgeAlert", "alert", alert_id, &result)
            .await;
        result
    }

    async fn acknowledge_inner(
        &self,
        caller: &Caller,
        alert_id: &str,
        comment: String,
    ) -> Result<Alert, WoundError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let wound_id = store::alerts::alert(&mut conn, alert_id)
            .await?
            .ok_or(WoundError::NotFound("alert"))?
            .wound_id;
        drop(conn);
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::wounds::lock_wound(&mut tx, &wound_id).await?;
        let wound = self
            .wound_for(&mut tx, identity, &wound_id, Access::Read)
            .await
            .map_err(|e| match e {
                WoundError::NotFound(_) => WoundError::NotFound("alert"),
                other => other,
            })?;
        if wound.referring_doctor != identity.subject {
            return Err(WoundError::PermissionDenied(
                "only the wound's referring doctor acknowledges its alerts",
            ));
        }
        let alert = store::alerts::alert(&mut tx, alert_id)
            .await?
            .ok_or(WoundError::NotFound("alert"))?;
        if let Some(done) = &alert.acknowledgement {
            return if done.by.subject == identity.subject {
                Ok(alert)
            } else {
                Err(WoundError::FailedPrecondition(
                    "the alert was already acknowledged by someone else".into(),
                ))
            };
        }
        let acknowledgement = Acknowledgement {
            by: ActorRecord::of(caller),
            at: now,
            comment,
        };
        store::alerts::acknowledge(&mut tx, alert_id, &acknowledgement).await?;
        store::wounds::refresh_open_alert_marker(&mut tx, &wound_id).await?;
        let entry = AuditEntry::new(caller, "AcknowledgeAlert", "alert", alert_id, Outcome::Ok);
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let notice = self
            .stage_notice(&mut tx, &wound, alert_id, AlertEventKind::Acknowledged)
            .await?;
        tx.commit().await?;
        self.flush_audit().await;
        notice.send();
        Ok(Alert {
            status: AlertStatus::Acknowledged,
            acknowledgement: Some(acknowledgement),
            ..alert
        })
    }

    /// Alert events for the wounds the caller follows (or one wound), as they happen, from any
    /// replica.
    pub async fn watch(
        &self,
        caller: &Caller,
        wound_id: Option<WoundId>,
    ) -> Result<impl Stream<Item = Result<(AlertEventKind, Alert), WoundError>> + use<>, WoundError>
    {
        let identity = person(caller)?.clone();
        // Subscribe before checking, so nothing raised in between is missed.
        let notices = self.bus.subscribe();
        if let Some(id) = &wound_id {
            let mut conn = self.base.db().pool().acquire().await?;
            let visible = self.wound_for(&mut conn, &identity, id, Access::Read).await;
            drop(conn);
            if let Err(error) = visible {
                self.audit(caller, "WatchAlerts", "wound", id, Outcome::of(&error))
                    .await;
                return Err(error);
            }
        }
        let caller = caller.clone();
        let core = self.clone();
        Ok(notices.filter_map(move |notice| {
            let (identity, caller, core, wound_id) = (
                identity.clone(),
                caller.clone(),
                core.clone(),
                wound_id.clone(),
            );
            async move {
                // Missed notifications end the watch: its client lists again.
                let notice = match notice {
                    Ok(notice) => notice,
                    Err(missed) => return Some(Err(KitError::from(missed).into())),
                };
                let notice: AlertNotice = serde_json::from_str(&notice).ok()?;
                let wanted = match &wound_id {
                    Some(id) => id.as_str() == notice.wound_id,
                    None => notice.followers.contains(&identity.subject),
                };
                if !wanted {
                    return None;
                }
                match core.delivered(&caller, &identity, &notice).await {
                    // Access lost since the alert was raised (left the care team...): this
                    // event is no longer theirs; the stream goes on.
                    Err(WoundError::NotFound(_)) => None,
                    delivered => Some(delivered),
                }
            }
        }))
    }

    async fn delivered(
        &self,
        caller: &Caller,
        identity: &Identity,
        notice: &AlertNotice,
    ) -> Result<(AlertEventKind, Alert), WoundError> {
        let mut conn = self.base.db().pool().acquire().await?;
        self.wound_for(&mut conn, identity, &notice.wound_id, Access::Read)
            .await?;
        let alert = store::alerts::alert(&mut conn, &notice.alert_id)
            .await?
            .ok_or(WoundError::NotFound("alert"))?;
        drop(conn);
        self.audit(caller, "WatchAlerts", "alert", &alert.id, Outcome::Ok)
            .await;
        Ok((notice.kind, alert))
    }
}
