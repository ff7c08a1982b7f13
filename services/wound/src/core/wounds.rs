//! Registering wounds, their description and care team, closing and reopening them.

use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    audit::{AuditEntry, Outcome},
    consent::Act,
    idempotency::{Claim, IdempotencyError, KeyedRequest},
    identity::{Caller, Identity, Role},
};

use super::{WoundMonitor, person};
use crate::model::WoundId;
use crate::{
    domain::{ClosureReason, MAX_CARE_TEAM, Subject, WoundDescription},
    error::WoundError,
    model::{Access, Closure, Wound, WoundStatus},
    store,
};
use telehealth_kit::record::ActorRecord;

/// A validated registration.
#[derive(Debug, Clone)]
pub struct NewWound {
    pub idempotency_key: String,
    pub patient_pseudonym: String,
    pub description: WoundDescription,
    /// `None`: the caller (a doctor).
    pub referring_doctor: Option<Subject>,
    /// Sorted, without duplicates.
    pub nurses: Vec<Subject>,
}

/// When the next assessment of `wound` is due: its last assessment (or the start of its
/// episode) plus its planned interval; `None` when closed.
pub(crate) fn next_due(wound: &Wound) -> Option<Timestamp> {
    if wound.status == WoundStatus::Closed {
        return None;
    }
    let from = wound.last_assessed_at.unwrap_or(wound.episode_started_at);
    Some(from + SignedDuration::from_hours(24 * wound.description.interval_days))
}

impl WoundMonitor {
    /// Registers a wound; returns it and whether it replays an earlier registration with the same
    /// idempotency key.
    pub async fn register(
        &self,
        caller: &Caller,
        new: NewWound,
    ) -> Result<(Wound, bool), WoundError> {
        let result = self.register_inner(caller, new).await;
        if let Err(error) = &result {
            self.audit(caller, "RegisterWound", "wound", "", Outcome::of(error))
                .await;
        }
        result
    }

    async fn register_inner(
        &self,
        caller: &Caller,
        new: NewWound,
    ) -> Result<(Wound, bool), WoundError> {
        let identity = person(caller)?;
        let referring_doctor = match &new.referring_doctor {
            Some(doctor) => doctor.as_str().to_owned(),
            None if identity.has_role(Role::Doctor) => identity.subject.clone(),
            None => {
                return Err(WoundError::invalid(
                    "referring_doctor_subject",
                    "is required when a nurse registers a wound",
                ));
            }
        };
        let mut nurses: Vec<String> = new.nurses.iter().map(|n| n.as_str().to_owned()).collect();
        if identity.has_role(Role::Nurse) && !nurses.contains(&identity.subject) {
            nurses.push(identity.subject.clone());
            nurses.sort();
        }
        if nurses.len() > MAX_CARE_TEAM {
            return Err(WoundError::invalid(
                "care_team_nurse_subjects",
                format!("at most {MAX_CARE_TEAM} nurses, the registering nurse included"),
            ));
        }
        let team: Vec<&str> = nurses.iter().map(String::as_str).collect();
        self.require_care_team(identity, Some(&referring_doctor), &team)
            .await?;
        let keyed = KeyedRequest::new(
            &identity.subject,
            "RegisterWound",
            &new.idempotency_key,
            format!(
                "{}|{:?}|{referring_doctor}|{nurses:?}",
                new.patient_pseudonym, new.description
            ),
        );
        if let Some(wound) = self.replayed_wound(&keyed).await? {
            return Ok((wound, true));
        }
        // Opening a follow-up is the act: the patient must have consented to remote monitoring.
        let consent = self
            .consents
            .check(&identity.org, &new.patient_pseudonym, Act::WoundMonitoring)
            .await?;

        let now = self.now();
        let mut wound = Wound {
            id: uuid::Uuid::new_v4().to_string(),
            org_id: identity.org.clone(),
            patient_pseudonym: consent.patient_id,
            description: new.description,
            referring_doctor,
            nurses,
            status: WoundStatus::Open,
            closure: None,
            episode: 1,
            episode_started_at: now,
            baseline_assessment_id: None,
            last_assessment_id: None,
            last_assessed_at: None,
            next_due_at: None,
            open_alert_count: 0,
            registered_at: now,
            registered_by: ActorRecord::of(caller),
            updated_at: now,
            version: 1,
            consent_id: Some(consent.consent_id),
        };
        wound.next_due_at = next_due(&wound);
        let mut tx = self.base.db().pool().begin().await?;
        store::wounds::insert_wound(&mut tx, &wound).await?;
        // Last write: a concurrent retry with the same key that won makes this one roll back
        // its wound and answer with the winner's.
        if let Claim::Replay(_) = keyed.claim(&mut tx, &wound.id, now).await? {
            drop(tx);
            return match self.replayed_wound(&keyed).await? {
                Some(first) => Ok((first, true)),
                None => Err(IdempotencyError::Raced.into()),
            };
        }
        let entry = AuditEntry::new(caller, "RegisterWound", "wound", &wound.id, Outcome::Ok);
        // The record commits with the change, then joins the chain before the caller hears of it.
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        tx.commit().await?;
        self.flush_audit().await;
        tracing::info!(wound_id = %wound.id, "wound registered");
        Ok((wound, false))
    }

    /// The wound an earlier registration with this key made, if any.
    async fn replayed_wound(&self, keyed: &KeyedRequest) -> Result<Option<Wound>, WoundError> {
        let mut conn = self.base.db().pool().acquire().await?;
        match keyed.replay(&mut conn).await? {
            None => Ok(None),
            Some(id) => store::wounds::wound(&mut conn, &id).await,
        }
    }

    /// One wound, if the caller may see it.
    pub async fn wound(&self, caller: &Caller, id: &WoundId) -> Result<Wound, WoundError> {
        let result = async {
            let identity = person(caller)?;
            let mut conn = self.base.db().pool().acquire().await?;
            self.wound_for(&mut conn, identity, id, Access::Read).await
        }
        .await;
        self.audit_result(caller, "GetWound", "wound", id, &result)
            .await;
        result
    }

    /// Replaces the clinical description of an open wound.
    pub async fn update_description(
        &self,
        caller: &Caller,
        id: &WoundId,
        description: WoundDescription,
        expected_version: i64,
    ) -> Result<Wound, WoundError> {
        self.change(caller, "UpdateWound", id, expected_version, |wound, _| {
            if wound.status == WoundStatus::Closed {
                return Err(WoundError::FailedPrecondition(
                    "the wound is closed; reopen it to change its description".into(),
                ));
            }
            wound.description = description;
            wound.next_due_at = next_due(wound);
            Ok(Changed::Yes)
        })
        .await
    }

    /// Replaces the care team and, for the referring doctor only, changes the referring doctor.
    pub async fn update_care_team(
        &self,
        caller: &Caller,
        id: &WoundId,
        referring_doctor: Option<Subject>,
        nurses: Vec<Subject>,
        expected_version: i64,
    ) -> Result<Wound, WoundError> {
        if let Caller::Person(identity) = caller {
            let team: Vec<&str> = nurses.iter().map(Subject::as_str).collect();
            let doctor = referring_doctor.as_ref().map(Subject::as_str);
            if let Err(error) = self.require_care_team(identity, doctor, &team).await {
                self.audit(caller, "UpdateCareTeam", "wound", id, Outcome::of(&error))
                    .await;
                return Err(error);
            }
        }
        self.change(
            caller,
            "UpdateCareTeam",
            id,
            expected_version,
            |wound, identity| {
                if let Some(doctor) = referring_doctor
                    && doctor.as_str() != wound.referring_doctor
                {
                    if identity.subject != wound.referring_doctor {
                        return Err(WoundError::PermissionDenied(
                            "only the referring doctor may hand the wound over to another doctor",
                        ));
                    }
                    wound.referring_doctor = doctor.as_str().to_owned();
                }
                wound.nurses = nurses.iter().map(|n| n.as_str().to_owned()).collect();
                Ok(Changed::Yes)
            },
        )
        .await
    }

    /// Closes a wound; the same caller retrying gets the closed wound back.
    pub async fn close(
        &self,
        caller: &Caller,
        id: &WoundId,
        reason: ClosureReason,
        comment: String,
    ) -> Result<Wound, WoundError> {
        let by = ActorRecord::of(caller);
        self.change(caller, "CloseWound", id, 0, |wound, identity| {
            if let Some(closure) = &wound.closure {
                // A retry by whoever closed it gets the wound as it is.
                return if closure.by.subject == identity.subject {
                    Ok(Changed::No)
                } else {
                    Err(WoundError::FailedPrecondition(
                        "the wound is already closed".into(),
                    ))
                };
            }
            wound.status = WoundStatus::Closed;
            wound.closure = Some(Closure {
                reason,
                comment,
                by,
                at: wound.updated_at,
            });
            wound.next_due_at = None;
            Ok(Changed::Yes)
        })
        .await
    }

    /// Reopens a closed wound in a new episode with its own baseline.
    pub async fn reopen(
        &self,
        caller: &Caller,
        id: &WoundId,
        comment: String,
    ) -> Result<Wound, WoundError> {
        self.change_with(caller, "ReopenWound", id, 0, &comment, |wound, _| {
            if wound.status != WoundStatus::Closed {
                return Err(WoundError::FailedPrecondition(
                    "only a closed wound can be reopened".into(),
                ));
            }
            wound.status = WoundStatus::Open;
            wound.closure = None;
            wound.episode += 1;
            wound.episode_started_at = wound.updated_at;
            wound.baseline_assessment_id = None;
            wound.last_assessment_id = None;
            wound.last_assessed_at = None;
            wound.next_due_at = next_due(wound);
            Ok(Changed::Yes)
        })
        .await
    }

    /// Applies `apply` to the wound `id` in a transaction, for someone who may change it, with
    /// optimistic concurrency; audits the outcome.
    async fn change(
        &self,
        caller: &Caller,
        action: &str,
        id: &str,
        expected_version: i64,
        apply: impl FnOnce(&mut Wound, &Identity) -> Result<Changed, WoundError>,
    ) -> Result<Wound, WoundError> {
        self.change_with(caller, action, id, expected_version, "", apply)
            .await
    }

    /// [`Self::change`], recording a new episode with `episode_comment` when `apply` starts one.
    async fn change_with(
        &self,
        caller: &Caller,
        action: &str,
        id: &str,
        expected_version: i64,
        episode_comment: &str,
        apply: impl FnOnce(&mut Wound, &Identity) -> Result<Changed, WoundError>,
    ) -> Result<Wound, WoundError> {
        let result = async {
            let identity = person(caller)?;
            let now = self.now();
            let mut tx = self.base.db().pool().begin().await?;
            store::wounds::lock_wound(&mut tx, id).await?;
            let current = self
                .wound_for(&mut tx, identity, id, Access::Change)
                .await?;
            if expected_version != 0 && expected_version != current.version {
                return Err(WoundError::VersionMismatch {
                    record: "wound",
                    current: current.version,
                });
            }
            let mut updated = current.clone();
            updated.updated_at = now;
            updated.version += 1;
            if apply(&mut updated, identity)? == Changed::No {
                return Ok(current);
            }
            store::wounds::update_wound(&mut tx, &updated).await?;
            if updated.nurses != current.nurses {
                store::wounds::set_care_team(&mut tx, id, &updated.nurses).await?;
            }
            if updated.episode != current.episode {
                let by = ActorRecord::of(caller);
                store::wounds::insert_episode(
                    &mut tx,
                    id,
                    updated.episode,
                    now,
                    &by,
                    episode_comment,
                )
                .await?;
            }
            let entry = AuditEntry::new(caller, action, "wound", id, Outcome::Ok);
            telehealth_kit::audit::stage(&mut tx, &entry).await?;
            tx.commit().await?;
            tracing::info!(wound_id = %id, action, "wound changed");
            Ok(updated)
        }
        .await;
        self.audit_change(caller, action, "wound", id, &result)
            .await;
        result
    }
}

/// Whether a change applies (a retry of a done change does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    Yes,
    No,
}
