//! The tele-expertise core: every operation with its authorisation, transaction and audit,
//! knowing nothing of gRPC.
//!
//! - [`requests`]: drafts and the lifecycle (submit, claim, release, answer, decline, withdraw,
//!   close), with the automatic sweeps (overdue, closure of old answers);
//! - [`images`]: attaching, listing, downloading images through the kit's image pipeline;
//! - [`messages`]: the conversation between requester and claimer;
//! - [`reading`]: one request, the inbox, "my requests" and the watch streams;
//! - [`reports`]: the monthly activity report and the answer report.
//!
//! Who sees what (docs/expertise.md, the contract's object-level rules): a request is visible to the
//! doctors of the requester's org and, once submitted, to the specialists of its target
//! specialty at its target org. Everyone else is told NOT_FOUND, word for word what a missing
//! request gives.

pub mod delivery;
pub mod filing;
pub mod images;
pub mod messages;
pub mod reading;
pub mod reports;
pub mod requests;

use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use telehealth_images::ImageStore;
use telehealth_kit::{
    Database, KitError, Part,
    audit::{AuditEntry, Outcome},
    config::ExpertiseRules,
    consent::Consents,
    directory::Directory,
    events::{EventBus, StagedEvent},
    identity::{Caller, Identity, Role},
    service_core::ServiceCore,
};

use crate::{
    error::ExpertiseError,
    model::{Event, Request},
};

pub use telehealth_kit::service_core::Clock;

/// What the event bus carries for a request event: enough to route it. Watchers read the event,
/// the request and the message from the database and check visibility again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Notice {
    pub event_id: String,
    pub request_id: String,
    pub kind: i64,
    pub requester: String,
    pub requester_org: String,
    pub target_org: String,
    pub specialty: String,
    pub claimer: Option<String>,
}

/// The tele-expertise service's core.
#[derive(Clone)]
pub struct Expertise {
    pub(crate) base: ServiceCore,
    pub(crate) bus: EventBus,
    pub(crate) rules: Arc<ExpertiseRules>,
    pub(crate) images: ImageStore,
    pub(crate) consents: Consents,
    pub(crate) directory: Directory,
    /// Where answering hospitals file the images (none by default).
    pub(crate) pacs: Arc<telehealth_kit::config::PacsSettings>,
}

impl Expertise {
    /// A core over `db`, announcing events on `bus`, with the configured `rules`, keeping
    /// images in `images`.
    pub fn new(
        db: Database,
        bus: EventBus,
        rules: ExpertiseRules,
        clock: Clock,
        images: ImageStore,
        consents: Consents,
        directory: Directory,
    ) -> Self {
        Expertise {
            base: ServiceCore::new(db, clock),
            bus,
            rules: Arc::new(rules),
            images,
            consents,
            directory,
            pacs: Arc::default(),
        }
    }

    /// The same core, filing answered requests' images in the PACS of `pacs`.
    pub fn with_pacs(mut self, pacs: telehealth_kit::config::PacsSettings) -> Self {
        self.pacs = Arc::new(pacs);
        self
    }

    /// The configured rules.
    pub fn rules(&self) -> &ExpertiseRules {
        &self.rules
    }

    /// The current instant, truncated to the microsecond (what the database stores).
    pub fn now(&self) -> Timestamp {
        self.base.now()
    }

    /// Records an audit entry about a request (reads, refusals).
    pub(crate) async fn audit(&self, caller: &Caller, action: &str, id: &str, outcome: Outcome) {
        self.audit_record(caller, action, "expertise_request", id, outcome)
            .await;
    }

    /// Records an audit entry about any record.
    pub(crate) async fn audit_record(
        &self,
        caller: &Caller,
        action: &str,
        kind: &str,
        id: &str,
        outcome: Outcome,
    ) {
        self.record_audit(AuditEntry::new(caller, action, kind, id, outcome))
            .await;
    }

    /// Chains the audit entries staged by committed changes (see `telehealth_kit::audit::stage`)
    /// and waits until that is durable; a failure is logged, the entries stay staged and the
    /// writer's sweep chains them.
    pub(crate) async fn flush_audit(&self) {
        self.base.flush_audit().await;
    }

    /// Writes `entry` (group-committed) and waits until it is durable.
    pub(crate) async fn record_audit(&self, entry: AuditEntry) {
        self.base.audit(entry).await;
    }

    /// Stages the notice of `event` of `request` in the transaction on `conn`: it reaches every
    /// replica's watchers when that commits, and never for a change rolled back.
    pub(crate) async fn stage_notice(
        &self,
        conn: &mut AnyConnection,
        request: &Request,
        event: &Event,
    ) -> Result<StagedEvent, KitError> {
        stage_notice(&self.bus, conn, request, event).await
    }
}

/// [`Expertise::stage_notice`] for the parts of the core that hold the bus only.
pub(crate) async fn stage_notice(
    bus: &EventBus,
    conn: &mut AnyConnection,
    request: &Request,
    event: &Event,
) -> Result<StagedEvent, KitError> {
    let notice = Notice {
        event_id: event.id.clone(),
        request_id: request.id.clone(),
        kind: event.kind as i64,
        requester: request.requester.subject.clone(),
        requester_org: request.requester_org.clone(),
        target_org: request.content.target_org_id.clone(),
        specialty: request.content.specialty.clone(),
        claimer: request.claimer().map(str::to_owned),
    };
    let payload = serde_json::to_string(&notice)
        .map_err(|e| KitError::Config(format!("request notice not serialisable: {e}")))?;
    bus.stage(conn, payload).await
}

/// The person behind a call, or PERMISSION_DENIED for a service caller.
pub(crate) fn person(caller: &Caller) -> Result<&Identity, ExpertiseError> {
    match caller {
        Caller::Person(identity) => Ok(identity),
        Caller::Service(_) => Err(ExpertiseError::PermissionDenied(
            "this call needs a person's identity",
        )),
    }
}

/// The service itself, as the actor of automatic changes.
pub(crate) fn this_service() -> Caller {
    Caller::Service(Part::Expertise)
}

/// On the requester's side: a doctor of the requester's org, or the nurse who made the request
/// (nurses see their own requests, not their colleagues').
pub(crate) fn on_requester_side(identity: &Identity, request: &Request) -> bool {
    identity.org == request.requester_org
        && (identity.has_role(Role::Doctor)
            || (identity.has_role(Role::Nurse) && identity.subject == request.requester.subject))
}

/// The profession a person requests a tele-expertise as (`requester_rights.profession`).
pub(crate) fn requester_profession(identity: &Identity) -> Option<&'static str> {
    if identity.has_role(Role::Doctor) {
        Some("doctor")
    } else if identity.has_role(Role::Nurse) {
        Some("nurse")
    } else {
        None
    }
}

/// The profession recorded for a requester (from the roles they acted with).
pub(crate) fn recorded_profession(requester: &telehealth_kit::record::ActorRecord) -> &'static str {
    if requester.roles.iter().any(|r| r == "doctor") {
        "doctor"
    } else if requester.roles.iter().any(|r| r == "nurse") {
        "nurse"
    } else {
        ""
    }
}

/// A specialist of the target specialty at the target org, once the request was submitted.
pub(crate) fn on_expert_side(identity: &Identity, request: &Request) -> bool {
    request.submitted_at.is_some()
        && identity.has_role(Role::Specialist)
        && !request.content.specialty.is_empty()
        && identity.org == request.content.target_org_id
        && identity.specialty.as_deref() == Some(request.content.specialty.as_str())
}

/// True when `identity` may see `request` at all.
pub(crate) fn can_see(identity: &Identity, request: &Request) -> bool {
    on_requester_side(identity, request) || on_expert_side(identity, request)
}

/// The request if `caller` may see it; NOT_FOUND otherwise, exactly as if it did not exist.
pub(crate) fn visible(
    caller: &Caller,
    request: Option<Request>,
) -> Result<Request, ExpertiseError> {
    match (caller, request) {
        (Caller::Service(Part::Expertise), Some(request)) => Ok(request),
        (Caller::Person(identity), Some(request)) if can_see(identity, &request) => Ok(request),
        _ => Err(ExpertiseError::NotFound("request")),
    }
}

/// The person wound monitoring acts for (a nurse of the care team or the referring doctor, as
/// it verified them); refused unless the caller is wound monitoring itself.
pub(crate) fn on_behalf_of_wound_requester(
    caller: &Caller,
    requester: &telehealth_proto::v1::Actor,
) -> Result<Caller, ExpertiseError> {
    if !matches!(caller, Caller::Service(Part::Wound)) {
        return Err(ExpertiseError::PermissionDenied(
            "only wound monitoring acts for a wound's care team",
        ));
    }
    let roles = requester
        .roles
        .iter()
        .filter_map(|r| match telehealth_proto::v1::Role::try_from(*r).ok()? {
            telehealth_proto::v1::Role::Doctor => Some(Role::Doctor),
            telehealth_proto::v1::Role::Nurse => Some(Role::Nurse),
            _ => None,
        })
        .collect();
    Ok(Caller::Person(Identity {
        subject: requester.subject.clone(),
        roles,
        org: requester.org_id.clone(),
        specialty: None,
        cert_thumbprint: String::new(),
    }))
}
