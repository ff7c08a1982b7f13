//! Drafts and the lifecycle of a request, and the sweeps that change requests as time passes.

use jiff::{SignedDuration, Timestamp};
use sqlx::AnyConnection;
use telehealth_kit::{
    audit::{AuditEntry, Outcome},
    consent::{Act, ConsentUsed},
    idempotency::{self, KeyedRequest},
    identity::{Caller, Identity},
};

use super::{Expertise, on_expert_side, person, this_service, visible};
use crate::model::RequestId;
use crate::{
    error::ExpertiseError,
    model::{
        self, Answer, Content, Decline, Event, EventKind, Request, Status, Transition, Urgency,
        Withdrawal,
    },
    store,
};
use telehealth_kit::record::ActorRecord;

/// What a transition carries besides the request id.
#[derive(Debug, Clone, Default)]
pub enum Details {
    #[default]
    None,
    Answer(Answer),
    Decline {
        reason: i32,
        comment: String,
    },
    Withdraw {
        reason: String,
    },
    Release {
        comment: String,
    },
}

/// How many requests one sweep handles at most (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 200;

impl Expertise {
    /// Checks that the target named by `content` (when named) is configured.
    fn check_target(&self, content: &Content) -> Result<(), ExpertiseError> {
        let (org, specialty) = (&content.target_org_id, &content.specialty);
        let targets = &self.rules.targets;
        let known = match (org.is_empty(), specialty.is_empty()) {
            (true, true) => true,
            (false, true) => targets.iter().any(|t| &t.org_id == org),
            (true, false) => targets.iter().any(|t| &t.specialty == specialty),
            (false, false) => self.rules.target(org, specialty).is_some(),
        };
        if known {
            Ok(())
        } else {
            Err(ExpertiseError::invalid(
                "content.target_org_id",
                format!("{org} / {specialty} is not a known target; see ListTargets"),
            ))
        }
    }

    /// Creates a draft; the caller becomes its requester. Returns it and whether this is a
    /// replay of an earlier call with the same idempotency key.
    pub async fn create_draft(
        &self,
        caller: &Caller,
        idempotency_key: &str,
        content: Content,
    ) -> Result<Request, ExpertiseError> {
        let result = self.create_inner(caller, idempotency_key, content).await;
        if let Err(error) = &result {
            self.audit(caller, "CreateDraft", "", Outcome::of(error))
                .await;
        }
        result
    }

    /// A request created from a wound follow-up by wound monitoring, on behalf of `requester`
    /// (a nurse of the care team or the referring doctor, as wound monitoring verified them),
    /// submitted at once when `submit` is set and the target needs no image.
    pub async fn create_wound_request(
        &self,
        caller: &Caller,
        requester: &telehealth_proto::v1::Actor,
        key: &str,
        content: Content,
        submit: bool,
    ) -> Result<Request, ExpertiseError> {
        let person = super::on_behalf_of_wound_requester(caller, requester)?;
        let draft = self.create_draft(&person, key, content).await?;
        let minimum_images = self
            .rules
            .target(&draft.content.target_org_id, &draft.content.specialty)
            .map_or(0, |t| t.minimum_images);
        if !submit || draft.status != Status::Draft {
            return Ok(draft);
        }
        if minimum_images > 0 && self.images_of(&draft.id).await?.len() < minimum_images as usize {
            return Ok(draft);
        }
        let id = RequestId::known(draft.id.clone());
        self.transition(&person, &id, Transition::Submit, Details::None, 0)
            .await
    }

    async fn create_inner(
        &self,
        caller: &Caller,
        key: &str,
        content: Content,
    ) -> Result<Request, ExpertiseError> {
        let identity = person(caller)?;
        self.check_target(&content)?;
        {
            let mut conn = self.base.db().pool().acquire().await?;
            self.check_requester_right(&mut conn, identity).await?;
        }
        let content = self.resolve_patient(&identity.org, content).await?;
        let keyed = KeyedRequest::new(
            &identity.subject,
            "CreateDraft",
            key,
            serde_json::to_vec(&content).unwrap_or_default(),
        );
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        // Concurrent first attempts with one key queue on the caller's row, so a retry racing
        // its first attempt sees the first one's result instead of creating a second draft.
        idempotency::lock(&mut tx, &identity.subject, "CreateDraft", now).await?;
        if let Some(first) = keyed.replay(&mut tx).await? {
            let first = store::request(&mut tx, &first).await?;
            tx.commit().await?;
            let first = visible(caller, first)?;
            self.audit(caller, "CreateDraft", &first.id, Outcome::Ok)
                .await;
            return Ok(first);
        }
        let request = Request {
            id: uuid::Uuid::new_v4().to_string(),
            status: Status::Draft,
            requester: ActorRecord::of(caller),
            requester_org: identity.org.clone(),
            content,
            created_at: now,
            updated_at: now,
            submitted_at: None,
            due_at: None,
            overdue_announced: false,
            claimed_by: None,
            claimed_at: None,
            answer: None,
            answered_at: None,
            decline: None,
            declined_at: None,
            withdrawal: None,
            withdrawn_at: None,
            closed_at: None,
            closed_by: None,
            message_count: 0,
            version: 1,
            consent_id: None,
        };
        store::insert_request(&mut tx, &request).await?;
        keyed.record(&mut tx, &request.id, now).await?;
        let entry = AuditEntry::new(
            caller,
            "CreateDraft",
            "expertise_request",
            &request.id,
            Outcome::Ok,
        );
        // The record commits with the change, then joins the chain before the caller hears of it.
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        tx.commit().await?;
        self.flush_audit().await;
        tracing::info!(request_id = %request.id, "draft created");
        Ok(request)
    }

    /// Replaces the content of a draft.
    pub async fn update_draft(
        &self,
        caller: &Caller,
        id: &RequestId,
        content: Content,
        expected_version: i64,
    ) -> Result<Request, ExpertiseError> {
        let result = async {
            self.check_target(&content)?;
            let org = &person(caller)?.org;
            let content = self.resolve_patient(org, content).await?;
            let mut tx = self.base.db().pool().begin().await?;
            store::lock_request(&mut tx, id).await?;
            let current = visible(caller, store::request(&mut tx, id).await?)?;
            require_requester(caller, &current)?;
            if current.status != Status::Draft {
                return Err(ExpertiseError::FailedPrecondition(format!(
                    "only a draft can be edited; this request is {}",
                    current.status.as_str()
                )));
            }
            check_version(&current, expected_version)?;
            let mut updated = current.clone();
            // A wound's history comes from wound monitoring only: an edit keeps it.
            let wound = updated.content.wound.take();
            updated.content = Content { wound, ..content };
            updated.updated_at = self.now();
            updated.version += 1;
            store::save_request(&mut tx, &updated, current.version).await?;
            let entry = AuditEntry::new(
                caller,
                "UpdateDraft",
                "expertise_request",
                id.as_str(),
                Outcome::Ok,
            );
            // The record commits with the change, then joins the chain before the caller hears of it.
            telehealth_kit::audit::stage(&mut tx, &entry).await?;
            tx.commit().await?;
            self.flush_audit().await;
            Ok(updated)
        }
        .await;
        if let Err(error) = &result {
            self.audit(caller, "UpdateDraft", id, Outcome::of(error))
                .await;
        }
        result
    }

    /// Applies a lifecycle transition asked for by `caller`.
    pub async fn transition(
        &self,
        caller: &Caller,
        id: &RequestId,
        transition: Transition,
        details: Details,
        expected_version: i64,
    ) -> Result<Request, ExpertiseError> {
        let result = self
            .transition_inner(caller, id, transition, details, expected_version)
            .await;
        if let Err(error) = &result {
            self.audit(caller, transition.action(), id, Outcome::of(error))
                .await;
        }
        result
    }

    async fn transition_inner(
        &self,
        caller: &Caller,
        id: &str,
        transition: Transition,
        details: Details,
        expected_version: i64,
    ) -> Result<Request, ExpertiseError> {
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::lock_request(&mut tx, id).await?;
        let current = visible(caller, store::request(&mut tx, id).await?)?;
        let identity = match caller {
            Caller::Person(identity) => Some(identity),
            Caller::Service(_) => None,
        };
        if let Some(identity) = identity {
            authorize(identity, &current, transition)?;
        }
        let outcome = model::apply(current.status, transition);
        // Repeating a release: the request is SUBMITTED again because this caller released it.
        if transition == Transition::Release
            && current.status == Status::Submitted
            && let Some(identity) = identity
            && store::last_transition(&mut tx, id).await?.is_some_and(|e| {
                e.kind == EventKind::Released && e.actor.subject == identity.subject
            })
        {
            return Ok(current);
        }
        match outcome? {
            model::Outcome::AlreadyDone => {
                if let Some(identity) = identity {
                    repeated_by(identity, &current, transition)?;
                }
                return Ok(current);
            }
            model::Outcome::Change(_) => {}
        }
        check_version(&current, expected_version)?;
        let mut updated = current.clone();
        updated.status = transition.target();
        updated.updated_at = now;
        updated.version += 1;
        let actor = ActorRecord::of(caller);
        match transition {
            Transition::Submit => {
                if let Some(identity) = identity {
                    self.check_requester_right(&mut tx, identity).await?;
                }
                let delay = self.submission_check(&mut tx, &current).await?;
                let consent = self.consent_to_send(&current).await?;
                if let Some(patient) = updated.content.patient.as_mut() {
                    patient.pseudonym = consent.patient_id;
                }
                updated.consent_id = Some(consent.consent_id);
                updated.submitted_at = Some(now);
                updated.due_at = Some(now + delay);
                updated.overdue_announced = false;
            }
            Transition::Claim => {
                updated.claimed_by = Some(actor.clone());
                updated.claimed_at = Some(now);
            }
            Transition::Release => {
                updated.claimed_by = None;
                updated.claimed_at = None;
            }
            Transition::Answer => {
                let Details::Answer(answer) = details.clone() else {
                    return Err(ExpertiseError::invalid("answer", "is required"));
                };
                updated.answer = Some(answer);
                updated.answered_at = Some(now);
            }
            Transition::Decline => {
                let Details::Decline { reason, comment } = details.clone() else {
                    return Err(ExpertiseError::invalid("reason", "is required"));
                };
                updated.decline = Some(Decline {
                    reason,
                    comment,
                    by: actor.clone(),
                });
                updated.declined_at = Some(now);
            }
            Transition::Withdraw => {
                let reason = match &details {
                    Details::Withdraw { reason } => reason.clone(),
                    _ => String::new(),
                };
                updated.withdrawal = Some(Withdrawal {
                    reason,
                    by: actor.clone(),
                });
                updated.withdrawn_at = Some(now);
            }
            Transition::Close => {
                updated.closed_at = Some(now);
                updated.closed_by = Some(actor.clone());
            }
        }
        store::save_request(&mut tx, &updated, current.version).await?;
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: id.to_owned(),
            kind: transition.event(),
            occurred_at: now,
            actor,
            message_id: None,
        };
        store::insert_event(&mut tx, &event).await?;
        if transition == Transition::Answer {
            // The report's deliveries commit with the answer: none can be forgotten.
            for (recipient, address) in crate::delivery::recipients(&updated.content) {
                let delivery = crate::delivery::Delivery {
                    request_id: id.to_owned(),
                    recipient,
                    address,
                    status: crate::delivery::DeliveryStatus::Pending,
                    attempts: 0,
                    last_error: String::new(),
                    next_attempt_at: now,
                    delivered_at: None,
                    created_at: now,
                };
                store::insert_delivery(&mut tx, &delivery).await?;
            }
            self.file_images(&mut tx, &updated, now).await?;
        }
        let entry = AuditEntry::new(
            caller,
            transition.action(),
            "expertise_request",
            id,
            Outcome::Ok,
        );
        // The record commits with the change, then joins the chain before the caller hears of it.
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let notice = self.stage_notice(&mut tx, &updated, &event).await?;
        tx.commit().await?;
        self.flush_audit().await;
        if let Details::Release { comment } = &details
            && !comment.is_empty()
        {
            // The release note is for the audit only (not shown to the requester).
            tracing::info!(request_id = %id, note = %comment, "request released");
        }
        notice.send();
        tracing::info!(request_id = %id, status = updated.status.as_str(), "request changed");
        Ok(updated)
    }

    /// `content` with its patient resolved against the register (an alias becomes the
    /// survivor); a patient the organisation does not know is refused.
    async fn resolve_patient(
        &self,
        org: &str,
        mut content: Content,
    ) -> Result<Content, ExpertiseError> {
        if let Some(patient) = content.patient.as_mut()
            && !patient.pseudonym.is_empty()
        {
            patient.pseudonym = self.consents.resolve(org, &patient.pseudonym).await?;
        }
        Ok(content)
    }

    /// Whether `identity`'s profession may request a tele-expertise today (dated data:
    /// `requester_rights`).
    async fn check_requester_right(
        &self,
        conn: &mut AnyConnection,
        identity: &Identity,
    ) -> Result<(), ExpertiseError> {
        let profession = super::requester_profession(identity).ok_or(
            ExpertiseError::PermissionDenied("only doctors and nurses request a tele-expertise"),
        )?;
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap_or(jiff::tz::TimeZone::UTC);
        let today = paris.to_datetime(self.now()).date().to_string();
        match store::requester_right(conn, profession, &today).await? {
            Some(_) => Ok(()),
            None => Err(ExpertiseError::PermissionDenied(
                "your profession may not request a tele-expertise on this date (requester_rights)",
            )),
        }
    }

    /// The patient's consent to the tele-expertise (R6316-2), checked in the register, and the
    /// patient's record shared with the hospital that will answer.
    async fn consent_to_send(&self, draft: &Request) -> Result<ConsentUsed, ExpertiseError> {
        let pseudonym = draft
            .content
            .patient
            .as_ref()
            .map(|p| p.pseudonym.as_str())
            .unwrap_or_default();
        let consent = self
            .consents
            .check(&draft.requester_org, pseudonym, Act::TeleExpertise)
            .await?;
        self.consents
            .share(
                &draft.requester_org,
                &consent.patient_id,
                &draft.content.target_org_id,
                &format!("expertise-request:{}", draft.id),
            )
            .await?;
        Ok(consent)
    }

    /// Checks that a draft can be submitted; returns its answer delay.
    async fn submission_check(
        &self,
        conn: &mut AnyConnection,
        draft: &Request,
    ) -> Result<SignedDuration, ExpertiseError> {
        let content = &draft.content;
        let missing = content.missing_fields();
        if !missing.is_empty() {
            return Err(ExpertiseError::FailedPrecondition(format!(
                "the draft is incomplete; missing: {}",
                missing.join(", ")
            )));
        }
        let Some(target) = self
            .rules
            .target(&content.target_org_id, &content.specialty)
        else {
            return Err(ExpertiseError::FailedPrecondition(format!(
                "{} / {} is no longer a target; choose one from ListTargets",
                content.target_org_id, content.specialty
            )));
        };
        if target.partners_only
            && !self
                .directory
                .partners(&draft.requester_org, &target.org_id)
                .await?
        {
            return Err(ExpertiseError::FailedPrecondition(format!(
                "{} answers requests of its partner centres only; ask your administrator to \
                 propose a partnership (DirectoryService/ProposePartnership) and the hospital to \
                 accept it",
                target.org_display_name
            )));
        }
        let images = super::images::attached(conn, &draft.id).await?.len() as u64;
        if images < u64::from(target.minimum_images) {
            return Err(ExpertiseError::FailedPrecondition(format!(
                "the draft is incomplete; missing: images (this target needs at least {}, {} attached; an upload in progress is not an attachment)",
                target.minimum_images, images
            )));
        }
        let hours = match content.urgency {
            Urgency::Urgent => target.urgent_delay_hours(&self.rules),
            _ => target.routine_delay_hours(&self.rules),
        };
        Ok(SignedDuration::from_hours(i64::from(hours)))
    }

    /// One pass of the periodic work, as of `now`: announces requests that became overdue and
    /// closes answers older than the configured delay. Safe on every replica at once: each change
    /// is claimed by one conditional update.
    /// Requests past their due time without an answer, all organisations (for the metrics).
    pub async fn overdue_count(&self) -> Result<i64, ExpertiseError> {
        let mut conn = self.base.db().pool().acquire().await?;
        store::count_overdue(&mut conn, self.now()).await
    }

    pub async fn sweep(&self) -> Result<(u64, u64), ExpertiseError> {
        let now = self.now();
        let mut conn = self.base.db().pool().acquire().await?;
        let overdue = store::newly_overdue(&mut conn, now, SWEEP_BATCH).await?;
        let cutoff = now - SignedDuration::from_hours(i64::from(self.rules.auto_close_after_hours));
        let to_close = store::answered_before(&mut conn, cutoff, SWEEP_BATCH).await?;
        drop(conn);
        let mut announced = 0;
        for id in overdue {
            if self.announce_overdue(&id, now).await? {
                announced += 1;
            }
        }
        let mut closed = 0;
        for id in to_close {
            let id = RequestId::known(id);
            match self
                .transition(&this_service(), &id, Transition::Close, Details::None, 0)
                .await
            {
                Ok(request)
                    if request
                        .closed_by
                        .as_ref()
                        .is_some_and(|c| !c.service.is_empty()) =>
                {
                    closed += 1;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, request_id = %id, "automatic closure failed"),
            }
        }
        Ok((announced, closed))
    }

    async fn announce_overdue(&self, id: &str, now: Timestamp) -> Result<bool, ExpertiseError> {
        let mut tx = self.base.db().pool().begin().await?;
        if !store::claim_overdue_announcement(&mut tx, id, now).await? {
            return Ok(false);
        }
        let Some(request) = store::request(&mut tx, id).await? else {
            return Ok(false);
        };
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: id.to_owned(),
            kind: EventKind::BecameOverdue,
            occurred_at: now,
            actor: ActorRecord::of(&this_service()),
            message_id: None,
        };
        store::insert_event(&mut tx, &event).await?;
        let notice = self.stage_notice(&mut tx, &request, &event).await?;
        tx.commit().await?;
        notice.send();
        Ok(true)
    }
}

/// Who may ask for which transition (the caller already sees the request).
fn authorize(
    identity: &Identity,
    request: &Request,
    transition: Transition,
) -> Result<(), ExpertiseError> {
    match transition {
        Transition::Submit | Transition::Withdraw | Transition::Close => {
            if identity.subject == request.requester.subject {
                Ok(())
            } else {
                Err(ExpertiseError::PermissionDenied(
                    "only the doctor who created the request may do this",
                ))
            }
        }
        Transition::Claim | Transition::Decline if !on_expert_side(identity, request) => Err(
            ExpertiseError::PermissionDenied("only a specialist of the target may do this"),
        ),
        Transition::Release | Transition::Answer if !on_expert_side(identity, request) => Err(
            ExpertiseError::PermissionDenied("only the claiming specialist may do this"),
        ),
        Transition::Release | Transition::Answer | Transition::Decline
            if request.status == Status::Claimed
                && request.claimer() != Some(identity.subject.as_str()) =>
        {
            Err(ExpertiseError::PermissionDenied(
                "the request is claimed by another specialist",
            ))
        }
        _ => Ok(()),
    }
}

/// A repeated transition is a no-op only for the caller who made it.
fn repeated_by(
    identity: &Identity,
    request: &Request,
    transition: Transition,
) -> Result<(), ExpertiseError> {
    let subject = identity.subject.as_str();
    match transition {
        Transition::Claim if request.claimer() != Some(subject) => {
            Err(ExpertiseError::AlreadyExists(
                "the request is already claimed by another specialist".into(),
            ))
        }
        Transition::Answer if request.claimer() != Some(subject) => {
            Err(ExpertiseError::FailedPrecondition(
                "the request was answered by another specialist".into(),
            ))
        }
        Transition::Decline
            if request.decline.as_ref().map(|d| d.by.subject.as_str()) != Some(subject) =>
        {
            Err(ExpertiseError::FailedPrecondition(
                "the request was declined by another specialist".into(),
            ))
        }
        _ => Ok(()),
    }
}

/// The current version must be `expected` (0 skips the check).
fn check_version(request: &Request, expected: i64) -> Result<(), ExpertiseError> {
    if expected != 0 && expected != request.version {
        return Err(ExpertiseError::VersionMismatch {
            current: request.version,
        });
    }
    Ok(())
}

/// Only the requester changes his request (colleagues of his org see it but may not).
fn require_requester(caller: &Caller, request: &Request) -> Result<(), ExpertiseError> {
    let identity = person(caller)?;
    if identity.subject == request.requester.subject {
        Ok(())
    } else {
        Err(ExpertiseError::PermissionDenied(
            "only the doctor who created the request may change it",
        ))
    }
}
