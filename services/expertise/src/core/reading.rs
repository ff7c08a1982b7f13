//! Reading requests: one request, the specialists' inbox, the doctors' requests, and the live
//! stream of events.

use futures::{Stream, StreamExt};
use telehealth_kit::{
    KitError,
    audit::Outcome,
    identity::{Caller, Identity, Role},
};

use super::{Expertise, Notice, can_see, person, visible};
use crate::model::RequestId;
use crate::{
    error::ExpertiseError,
    model::{Event, EventKind, Message, Request, Status},
    store::{self, InboxFilter, InboxPosition, MineFilter},
};

/// What an inbox listing asks for (the target comes from the caller's identity).
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    pub statuses: Vec<Status>,
    pub claimed_by_me: bool,
    pub overdue_only: bool,
}

/// What a watch stream follows.
#[derive(Debug, Clone, Default)]
pub struct WatchQuery {
    pub request_id: Option<RequestId>,
    pub whole_org: bool,
}

/// One event as a watcher receives it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Event,
    pub request: Request,
    pub message: Option<Message>,
}

impl Expertise {
    /// One request, if the caller may see it (NOT_FOUND otherwise, as if it did not exist).
    pub async fn request(
        &self,
        caller: &Caller,
        id: &RequestId,
    ) -> Result<Request, ExpertiseError> {
        let result = async {
            let mut conn = self.base.db().pool().acquire().await?;
            visible(caller, store::request(&mut conn, id).await?)
        }
        .await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "GetRequest", id, outcome).await;
        result
    }

    /// The caller's inbox page after `after`; returns the requests with their positions.
    pub async fn inbox(
        &self,
        caller: &Caller,
        query: &InboxQuery,
        as_of: jiff::Timestamp,
        after: Option<&InboxPosition>,
        limit: i64,
    ) -> Result<Vec<(Request, InboxPosition)>, ExpertiseError> {
        let identity = person(caller)?;
        // Without a specialty the caller is the specialist of no target: his inbox is empty.
        let Some(specialty) = identity
            .specialty
            .clone()
            .filter(|_| identity.has_role(Role::Specialist))
        else {
            return Ok(Vec::new());
        };
        let filter = InboxFilter {
            target_org: identity.org.clone(),
            specialty,
            statuses: if query.statuses.is_empty() {
                vec![Status::Submitted, Status::Claimed]
            } else {
                query.statuses.clone()
            },
            claimed_by: query.claimed_by_me.then(|| identity.subject.clone()),
            overdue_only: query.overdue_only,
            as_of,
        };
        let mut conn = self.base.db().pool().acquire().await?;
        let found = store::inbox(&mut conn, &filter, after, limit).await?;
        drop(conn);
        for (request, _) in &found {
            self.audit(caller, "ListInbox", &request.id, Outcome::Ok)
                .await;
        }
        Ok(found)
    }

    /// The caller's requests (or his org's with `whole_org`), newest first.
    pub async fn my_requests(
        &self,
        caller: &Caller,
        statuses: Vec<Status>,
        whole_org: bool,
        patient: Option<String>,
        after: Option<&(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Request>, ExpertiseError> {
        let identity = person(caller)?;
        let doctor = identity.has_role(Role::Doctor);
        if !doctor && !identity.has_role(Role::Nurse) {
            return Ok(Vec::new());
        }
        // Under every id that names the patient, as the caller's organisation sees them.
        let patients = match patient {
            Some(patient) => self.consents.ids_of(&identity.org, &patient).await?,
            None => Vec::new(),
        };
        // A nurse lists her own requests only, whole organisation or not.
        let filter = MineFilter {
            requester_org: identity.org.clone(),
            requester: (!(whole_org && doctor)).then(|| identity.subject.clone()),
            statuses,
            patients,
        };
        let mut conn = self.base.db().pool().acquire().await?;
        let found = store::my_requests(&mut conn, &filter, after, limit).await?;
        drop(conn);
        for request in &found {
            self.audit(caller, "ListMyRequests", &request.id, Outcome::Ok)
                .await;
        }
        Ok(found)
    }

    /// Events of the requests `caller` follows, as they happen on any replica. With a request
    /// id, that request must be visible now (else NOT_FOUND).
    pub async fn watch(
        &self,
        caller: &Caller,
        query: WatchQuery,
    ) -> Result<impl Stream<Item = Result<Delivery, ExpertiseError>> + use<>, ExpertiseError> {
        let identity = person(caller)?.clone();
        // Subscribe first: nothing published after the check is missed.
        let notices = self.bus.subscribe();
        if let Some(id) = &query.request_id {
            let mut conn = self.base.db().pool().acquire().await?;
            let found = visible(caller, store::request(&mut conn, id).await?);
            drop(conn);
            let outcome = found.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
            self.audit(caller, "WatchRequests", id, outcome).await;
            found?;
        }
        let caller = caller.clone();
        let core = self.clone();
        Ok(notices.filter_map(move |notice| {
            let (identity, caller, core, query) = (
                identity.clone(),
                caller.clone(),
                core.clone(),
                query.clone(),
            );
            async move {
                // Missed notifications end the watch: its client lists again.
                let notice = match notice {
                    Ok(notice) => notice,
                    Err(missed) => return Some(Err(KitError::from(missed).into())),
                };
                let notice: Notice = serde_json::from_str(&notice).ok()?;
                if !concerned(&identity, &query, &notice) {
                    return None;
                }
                match core.delivery(&caller, &identity, &notice).await {
                    Ok(Some(delivery)) => Some(Ok(delivery)),
                    Ok(None) => None,
                    Err(error) => Some(Err(error)),
                }
            }
        }))
    }

    async fn delivery(
        &self,
        caller: &Caller,
        identity: &Identity,
        notice: &Notice,
    ) -> Result<Option<Delivery>, ExpertiseError> {
        let mut conn = self.base.db().pool().acquire().await?;
        let Some(request) = store::request(&mut conn, &notice.request_id)
            .await?
            .filter(|r| can_see(identity, r))
        else {
            return Ok(None);
        };
        let Some(event) = store::event(&mut conn, &notice.event_id).await? else {
            return Ok(None);
        };
        let message = match &event.message_id {
            Some(id) => store::message(&mut conn, id).await?,
            None => None,
        };
        drop(conn);
        self.audit(caller, "WatchRequests", &request.id, Outcome::Ok)
            .await;
        Ok(Some(Delivery {
            event,
            request,
            message,
        }))
    }
}

/// Whether a watcher follows the request of `notice` (visibility is checked again on the
/// record): a doctor his own requests (his org's with `whole_org`); a specialist the inbox
/// events of his target and everything about the requests he claimed; anyone the one request
/// he asked for.
fn concerned(identity: &Identity, query: &WatchQuery, notice: &Notice) -> bool {
    let one = query.request_id.as_deref();
    if one.is_some_and(|id| id != notice.request_id) {
        return false;
    }
    let doctor = identity.has_role(Role::Doctor)
        && identity.org == notice.requester_org
        && (query.whole_org || one.is_some() || identity.subject == notice.requester);
    let requesting_nurse = identity.has_role(Role::Nurse)
        && identity.org == notice.requester_org
        && identity.subject == notice.requester;
    let kind = EventKind::from_number(notice.kind);
    let specialist = identity.has_role(Role::Specialist)
        && identity.org == notice.target_org
        && identity.specialty.as_deref() == Some(notice.specialty.as_str())
        && (kind.is_some_and(EventKind::is_inbox_event)
            || notice.claimer.as_deref() == Some(identity.subject.as_str())
            || one.is_some());
    doctor || requesting_nurse || specialist
}
