//! The wound monitoring core: every operation, with its authorisation, transaction and audit,
//! knowing nothing of gRPC. Each takes the caller and validated values and returns domain
//! values.
//!
//! - [`wounds`]: registering, describing, the care team, closing and reopening;
//! - [`assessments`]: recording and correcting assessments, their history and the trend;
//! - [`alerts`]: raising (once per cause), listing, acknowledging and watching alerts;
//! - [`lists`]: the nurse's round and the doctor's wounds;
//! - [`photos`]: photo uploads (attached or pending), upload status, downloads and thumbnails,
//!   through the kit's image pipeline;
//! - [`sweeper`]: the periodic task that raises overdue alerts and purges what expired.

pub mod alerts;
pub mod assessments;
pub mod expertise;
pub mod lists;
pub mod photos;
pub mod sweeper;
pub mod wounds;

use std::collections::BTreeMap;

use jiff::Timestamp;
use sqlx::AnyConnection;
use telehealth_images::ImageStore;
use telehealth_kit::{
    Database,
    audit::{AuditEntry, Outcome},
    consent::Consents,
    directory::Directory,
    events::EventBus,
    identity::{Caller, Identity, Role},
    service_core::ServiceCore,
};

use crate::{
    error::WoundError,
    model::{Access, AssessmentVersion, Wound},
    scoring::{self, Figures, Point, Push, Rules},
    store,
};

use telehealth_kit::metrics::{Counter, Metrics};
pub use telehealth_kit::service_core::Clock;

/// The wound monitoring service's core.
#[derive(Clone)]
pub struct WoundMonitor {
    pub(crate) base: ServiceCore,
    pub(crate) bus: EventBus,
    pub(crate) rules: Rules,
    pub(crate) directory: Directory,
    pub(crate) consents: Consents,
    pub(crate) expertise: expertise::ExpertiseRequests,
    /// The shared image pipeline holding the photos' bytes and infos.
    pub(crate) images: ImageStore,
    /// Alerts raised, by cause (none for a core of tests).
    pub(crate) alerts_raised: Option<Counter<u64>>,
}

/// An assessment version with the figures computed from it and its episode.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessmentView {
    pub version: AssessmentVersion,
    pub push: Push,
    pub figures: Figures,
}

/// The other services wound monitoring asks: the directory for care teams and consents,
/// tele-expertise for requests about a wound.
pub struct Peers {
    pub directory: Directory,
    pub consents: Consents,
    pub expertise: expertise::ExpertiseRequests,
}

impl WoundMonitor {
    /// A core over `db`, announcing alerts on `bus`, asking `peers`, keeping photos in
    /// `images`.
    pub fn new(
        db: Database,
        bus: EventBus,
        rules: Rules,
        clock: Clock,
        peers: Peers,
        images: ImageStore,
    ) -> Self {
        WoundMonitor {
            base: ServiceCore::new(db, clock),
            bus,
            rules,
            directory: peers.directory,
            consents: peers.consents,
            expertise: peers.expertise,
            images,
            alerts_raised: None,
        }
    }

    /// Counts the alerts raised in `metrics` (`wound_alerts_raised_total{cause}`).
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.alerts_raised = Some(
            metrics
                .meter("telehealth.wound")
                .u64_counter("wound.alerts.raised")
                .with_description("Wound alerts raised, by cause")
                .build(),
        );
        self
    }

    /// Succeeds when the referring doctor and every nurse of a care team are active members of
    /// the caller's org as a doctor and as nurses (the caller stands for himself); anyone else
    /// is answered as unknown, so a care team never reaches into another organisation.
    pub(crate) async fn require_care_team(
        &self,
        identity: &Identity,
        referring_doctor: Option<&str>,
        nurses: &[&str],
    ) -> Result<(), WoundError> {
        if let Some(doctor) = referring_doctor
            && !self
                .directory
                .is_member_with_role(identity, doctor, Role::Doctor)
                .await?
        {
            return Err(WoundError::NotFound("referring doctor"));
        }
        for nurse in nurses {
            if !self
                .directory
                .is_member_with_role(identity, nurse, Role::Nurse)
                .await?
            {
                return Err(WoundError::NotFound("nurse"));
            }
        }
        Ok(())
    }

    /// The thresholds in force.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The current instant, truncated to the microsecond (what the database stores).
    pub(crate) fn now(&self) -> Timestamp {
        self.base.now()
    }

    /// Records an audit entry outside any transaction (reads, refusals).
    pub(crate) async fn audit(
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

    /// Audits the outcome of `result` (reads and refused changes).
    pub(crate) async fn audit_result<T>(
        &self,
        caller: &Caller,
        action: &str,
        kind: &str,
        id: &str,
        result: &Result<T, WoundError>,
    ) {
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, action, kind, id, outcome).await;
    }

    /// After a change: on success, chains the audit entries the change staged in its transaction
    /// (see `telehealth_kit::audit::stage`); on failure, records the refusal.
    pub(crate) async fn audit_change<T>(
        &self,
        caller: &Caller,
        action: &str,
        kind: &str,
        id: &str,
        result: &Result<T, WoundError>,
    ) {
        match result {
            Ok(_) => self.flush_audit().await,
            Err(error) => {
                self.audit(caller, action, kind, id, Outcome::of(error))
                    .await
            }
        }
    }

    /// Chains the staged audit entries of committed changes and waits until that is durable; a
    /// failure is logged, the entries stay staged and the writer's sweep chains them.
    pub(crate) async fn flush_audit(&self) {
        self.base.flush_audit().await;
    }

    /// Writes `entry` to the audit trail (batched with concurrent ones) and waits until it is
    /// committed.
    pub(crate) async fn record_audit(&self, entry: AuditEntry) {
        self.base.audit(entry).await;
    }

    /// The wound `id` if `identity` has at least `needed` access to it. Someone without any
    /// access gets NOT_FOUND, exactly as for a wound that does not exist; a read-only doctor
    /// asking for a change gets PERMISSION_DENIED.
    pub(crate) async fn wound_for(
        &self,
        conn: &mut AnyConnection,
        identity: &Identity,
        id: &str,
        needed: Access,
    ) -> Result<Wound, WoundError> {
        let wound = store::wounds::wound(conn, id)
            .await?
            .ok_or(WoundError::NotFound("wound"))?;
        match wound.access(identity) {
            Access::None => Err(WoundError::NotFound("wound")),
            access if access < needed => Err(WoundError::PermissionDenied(
                "you may read this wound but not change it (only its referring doctor and care team may)",
            )),
            _ => Ok(wound),
        }
    }

    /// The wound `id` if `identity` is a nurse of its care team (who alone record assessments
    /// and photos).
    pub(crate) async fn wound_for_nurse(
        &self,
        conn: &mut AnyConnection,
        identity: &Identity,
        id: &str,
    ) -> Result<Wound, WoundError> {
        let wound = self.wound_for(conn, identity, id, Access::Read).await?;
        if !wound.in_care_team(&identity.subject) {
            return Err(WoundError::PermissionDenied(
                "only the nurses of the wound's care team record assessments and photos",
            ));
        }
        Ok(wound)
    }
}

/// The person behind a call, or PERMISSION_DENIED for a service caller.
pub(crate) fn person(caller: &Caller) -> Result<&Identity, WoundError> {
    match caller {
        Caller::Person(identity) => Ok(identity),
        Caller::Service(_) => Err(WoundError::PermissionDenied(
            "this call needs a person's identity",
        )),
    }
}

/// The rules' view of a stored version.
pub(crate) fn point(version: &AssessmentVersion) -> Point {
    let m = &version.measurements;
    Point {
        assessment_id: version.assessment_id.clone(),
        assessed_at: m.assessed_at,
        length_mm: m.length_mm,
        width_mm: m.width_mm,
        tissue: m.tissue,
        exudate: m.exudate,
        infection_signs: m.infection_signs.clone(),
    }
}

/// The views of `series` (current versions, sorted by assessed_at then id, possibly of several
/// episodes), in the same order, each with figures computed within its episode.
pub(crate) fn views(series: Vec<AssessmentVersion>) -> Vec<AssessmentView> {
    let mut episodes: BTreeMap<i64, Vec<Point>> = BTreeMap::new();
    let mut positions = Vec::with_capacity(series.len());
    for version in &series {
        let points = episodes.entry(version.episode).or_default();
        positions.push(points.len());
        points.push(point(version));
    }
    series
        .into_iter()
        .zip(positions)
        .map(|(version, index)| {
            let points = &episodes[&version.episode];
            AssessmentView {
                push: points[index].push(),
                figures: scoring::figures(points, index),
                version,
            }
        })
        .collect()
}

/// The view of `version` within `series` (the current versions of its episode): a past version
/// is computed in place of the current one.
pub(crate) fn view_within(
    mut series: Vec<AssessmentVersion>,
    version: AssessmentVersion,
) -> AssessmentView {
    series.retain(|v| v.assessment_id != version.assessment_id);
    let id = version.assessment_id.clone();
    series.push(version);
    series.sort_by(|a, b| {
        (a.measurements.assessed_at, &a.assessment_id)
            .cmp(&(b.measurements.assessed_at, &b.assessment_id))
    });
    let index = series
        .iter()
        .position(|v| v.assessment_id == id)
        .unwrap_or(0);
    views(series).swap_remove(index)
}
