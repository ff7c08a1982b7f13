//! Messages between the requester and the claiming specialist, in order.

use telehealth_kit::{
    audit::{AuditEntry, Outcome},
    idempotency::KeyedRequest,
    identity::Caller,
};

use super::{Expertise, person, visible};
use crate::model::RequestId;
use crate::{
    error::ExpertiseError,
    model::{Event, EventKind, Message, Status},
    store,
};
use telehealth_kit::record::ActorRecord;

impl Expertise {
    /// Posts a message on a request (CLAIMED or ANSWERED) as its requester or its claimer.
    /// A retry with the same idempotency key returns the first message.
    pub async fn post_message(
        &self,
        caller: &Caller,
        id: &RequestId,
        key: &str,
        text: &str,
    ) -> Result<Message, ExpertiseError> {
        let result = self.post_inner(caller, id, key, text).await;
        if let Err(error) = &result {
            self.audit(caller, "PostMessage", id, Outcome::of(error))
                .await;
        }
        result
    }

    async fn post_inner(
        &self,
        caller: &Caller,
        id: &str,
        key: &str,
        text: &str,
    ) -> Result<Message, ExpertiseError> {
        let identity = person(caller)?;
        let keyed = KeyedRequest::new(
            &identity.subject,
            "PostMessage",
            key,
            format!("{id}\n{text}"),
        );
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        // The request's lock orders its messages and queues a retry behind its first attempt.
        store::lock_request(&mut tx, id).await?;
        let current = visible(caller, store::request(&mut tx, id).await?)?;
        if let Some(first) = keyed.replay(&mut tx).await? {
            let first = store::message(&mut tx, &first)
                .await?
                .ok_or(ExpertiseError::NotFound("message"))?;
            tx.commit().await?;
            self.audit(caller, "PostMessage", id, Outcome::Ok).await;
            return Ok(first);
        }
        let is_party = identity.subject == current.requester.subject
            || current.claimer() == Some(identity.subject.as_str());
        if !is_party {
            return Err(ExpertiseError::PermissionDenied(
                "only the requester and the claiming specialist post messages on a request",
            ));
        }
        if !matches!(current.status, Status::Claimed | Status::Answered) {
            return Err(ExpertiseError::FailedPrecondition(format!(
                "messages can be posted on a claimed or answered request; this one is {}",
                current.status.as_str()
            )));
        }
        let message = Message {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: id.to_owned(),
            sequence: current.message_count + 1,
            author: ActorRecord::of(caller),
            text: text.to_owned(),
            posted_at: now,
        };
        store::insert_message(&mut tx, &message).await?;
        let mut updated = current.clone();
        updated.message_count += 1;
        updated.version += 1;
        updated.updated_at = now;
        store::save_request(&mut tx, &updated, current.version).await?;
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: id.to_owned(),
            kind: EventKind::MessagePosted,
            occurred_at: now,
            actor: message.author.clone(),
            message_id: Some(message.id.clone()),
        };
        store::insert_event(&mut tx, &event).await?;
        keyed.record(&mut tx, &message.id, now).await?;
        let entry = AuditEntry::new(caller, "PostMessage", "expertise_request", id, Outcome::Ok);
        // The record commits with the change, then joins the chain before the caller hears of it.
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let notice = self.stage_notice(&mut tx, &updated, &event).await?;
        tx.commit().await?;
        self.flush_audit().await;
        notice.send();
        Ok(message)
    }

    /// Messages of a request the caller may see, after sequence `after`, at most `limit`.
    pub async fn messages(
        &self,
        caller: &Caller,
        id: &RequestId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Message>, ExpertiseError> {
        let result = async {
            let mut conn = self.base.db().pool().acquire().await?;
            visible(caller, store::request(&mut conn, id).await?)?;
            store::messages(&mut conn, id, after, limit).await
        }
        .await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "ListMessages", id, outcome).await;
        result
    }
}
