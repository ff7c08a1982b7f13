//! Assessments: recording and correcting them (a correction is a new version; the earlier ones
//! stay in the history), reading them with their computed figures, and the healing trend.

use jiff::{SignedDuration, Timestamp, civil::Date, tz::TimeZone};
use telehealth_kit::{
    audit::{AuditEntry, Outcome},
    idempotency::{Claim, IdempotencyError, KeyedRequest},
    identity::{Caller, Identity},
};

use super::{AssessmentView, WoundMonitor, alerts, person, point, views};
use crate::model::{AssessmentId, WoundId};
use crate::{
    domain::{AreaMethod, Measurements},
    error::WoundError,
    model::{Access, Alert, AssessmentVersion, Wound, WoundStatus},
    scoring::{self, HealingTrend},
    store,
};
use telehealth_kit::record::ActorRecord;

/// Largest clock skew accepted on `assessed_at`.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);
/// Most points in a trend answer.
pub const MAX_TREND_POINTS: usize = 500;

/// A validated assessment to record.
#[derive(Debug, Clone)]
pub struct NewAssessment {
    pub idempotency_key: String,
    pub wound_id: WoundId,
    pub measurements: Measurements,
}

/// What the trend chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub wound_id: String,
    pub area_method: AreaMethod,
    /// Oldest first, each with its days since its episode's baseline.
    pub points: Vec<(AssessmentView, f64)>,
    pub truncated: bool,
    pub baseline_assessment_id: String,
    pub from_baseline: Option<f64>,
    pub four_weeks: Option<f64>,
    pub area_change_per_week: Option<f64>,
    pub healing_trend: HealingTrend,
}

/// Which assessments a trend covers.
#[derive(Debug, Clone, Copy)]
pub struct TrendQuery {
    pub area_method: AreaMethod,
    /// Assessment times `[start, end)`; every episode.
    pub range: Option<(Timestamp, Timestamp)>,
    pub all_episodes: bool,
}

impl WoundMonitor {
    /// Records an assessment by a care-team nurse; returns it with the alerts it raised, and
    /// whether it replays an earlier call with the same idempotency key.
    pub async fn record(
        &self,
        caller: &Caller,
        new: NewAssessment,
    ) -> Result<(AssessmentView, Vec<Alert>, bool), WoundError> {
        let result = self.record_inner(caller, &new).await;
        match &result {
            // A new assessment's record was staged with it; a replay is a read of the first one.
            Ok((_, _, false)) => {}
            Ok((view, _, true)) => {
                let id = view.version.assessment_id.clone();
                self.audit(caller, "RecordAssessment", "assessment", &id, Outcome::Ok)
                    .await;
            }
            Err(error) => {
                self.audit(
                    caller,
                    "RecordAssessment",
                    "wound",
                    &new.wound_id,
                    Outcome::of(error),
                )
                .await;
            }
        }
        result
    }

    async fn record_inner(
        &self,
        caller: &Caller,
        new: &NewAssessment,
    ) -> Result<(AssessmentView, Vec<Alert>, bool), WoundError> {
        let identity = person(caller)?;
        let keyed = KeyedRequest::new(
            &identity.subject,
            "RecordAssessment",
            &new.idempotency_key,
            format!("{}|{:?}", new.wound_id, new.measurements),
        );
        if let Some((view, raised)) = self.replayed_assessment(identity, &keyed).await? {
            return Ok((view, raised, true));
        }
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::wounds::lock_wound(&mut tx, &new.wound_id).await?;
        let wound = self
            .wound_for_nurse(&mut tx, identity, &new.wound_id)
            .await?;
        if wound.status == WoundStatus::Closed {
            return Err(WoundError::FailedPrecondition(
                "the wound is closed; reopen it to record an assessment".into(),
            ));
        }
        check_assessed_at(&wound, new.measurements.assessed_at, now)?;
        let mut version = AssessmentVersion {
            assessment_id: uuid::Uuid::new_v4().to_string(),
            version: 1,
            current: true,
            wound_id: wound.id.clone(),
            episode: wound.episode,
            measurements: new.measurements.clone(),
            recorded_at: now,
            recorded_by: ActorRecord::of(caller),
            correction_reason: String::new(),
        };
        for image_id in &new.measurements.photo_image_ids {
            let attached = store::assessments::attach_photo(
                &mut tx,
                &wound.id,
                image_id,
                &version.assessment_id,
                1,
            )
            .await?;
            if !attached {
                return Err(unusable_photo(image_id));
            }
        }
        version.measurements.photo_image_ids = new.measurements.photo_image_ids.clone();
        store::assessments::insert_version(&mut tx, &version).await?;
        let (view, raised, wound) = self
            .after_change(&mut tx, wound, &version.assessment_id, now)
            .await?;
        // Last write: a concurrent retry with the same key that won makes this one roll back
        // its assessment and answer with the winner's.
        if let Claim::Replay(_) = keyed.claim(&mut tx, &version.assessment_id, now).await? {
            drop(tx);
            return match self.replayed_assessment(identity, &keyed).await? {
                Some((view, raised)) => Ok((view, raised, true)),
                None => Err(IdempotencyError::Raced.into()),
            };
        }
        let entry = AuditEntry::new(
            caller,
            "RecordAssessment",
            "assessment",
            &view.version.assessment_id,
            Outcome::Ok,
        );
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let notices = self.stage_raised(&mut tx, &wound, &raised).await?;
        tx.commit().await?;
        self.flush_audit().await;
        self.announce_raised(&wound, &raised, notices);
        tracing::info!(assessment_id = %view.version.assessment_id, wound_id = %wound.id, "assessment recorded");
        Ok((view, raised, false))
    }

    /// The assessment an earlier call with this key recorded, with the alerts it raised.
    async fn replayed_assessment(
        &self,
        identity: &Identity,
        keyed: &KeyedRequest,
    ) -> Result<Option<(AssessmentView, Vec<Alert>)>, WoundError> {
        let mut conn = self.base.db().pool().acquire().await?;
        let Some(id) = keyed.replay(&mut conn).await? else {
            return Ok(None);
        };
        let (view, _) = self
            .visible_assessment(&mut conn, identity, &id, None)
            .await?;
        let raised = store::alerts::alerts_of_assessment(&mut conn, &id).await?;
        Ok(Some((view, raised)))
    }

    /// Corrects an assessment: a new current version with the corrected values and a reason.
    pub async fn correct(
        &self,
        caller: &Caller,
        assessment_id: &AssessmentId,
        measurements: Measurements,
        reason: String,
        expected_version: i64,
    ) -> Result<(AssessmentView, Vec<Alert>), WoundError> {
        let result = self
            .correct_inner(
                caller,
                assessment_id,
                measurements,
                reason,
                expected_version,
            )
            .await;
        self.audit_change(
            caller,
            "CorrectAssessment",
            "assessment",
            assessment_id,
            &result,
        )
        .await;
        result
    }

    async fn correct_inner(
        &self,
        caller: &Caller,
        assessment_id: &str,
        measurements: Measurements,
        reason: String,
        expected_version: i64,
    ) -> Result<(AssessmentView, Vec<Alert>), WoundError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let wound_id = store::assessments::version(&mut conn, assessment_id, None)
            .await?
            .ok_or(WoundError::NotFound("assessment"))?
            .wound_id;
        drop(conn);
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        store::wounds::lock_wound(&mut tx, &wound_id).await?;
        let wound = self
            .wound_for_nurse(&mut tx, identity, &wound_id)
            .await
            .map_err(|e| match e {
                WoundError::NotFound(_) => WoundError::NotFound("assessment"),
                other => other,
            })?;
        let current = store::assessments::version(&mut tx, assessment_id, None)
            .await?
            .ok_or(WoundError::NotFound("assessment"))?;
        if expected_version != current.version {
            return Err(WoundError::VersionMismatch {
                record: "assessment",
                current: current.version,
            });
        }
        if wound.status == WoundStatus::Closed {
            return Err(WoundError::FailedPrecondition(
                "the wound is closed; reopen it to correct its assessments".into(),
            ));
        }
        if current.episode != wound.episode {
            return Err(WoundError::FailedPrecondition(
                "the assessment belongs to an earlier episode of the wound".into(),
            ));
        }
        check_assessed_at(&wound, measurements.assessed_at, now)?;
        let next = current.version + 1;
        for kept in &current.measurements.photo_image_ids {
            if !measurements.photo_image_ids.contains(kept) {
                return Err(WoundError::invalid(
                    "photo_image_ids",
                    format!(
                        "photo {kept} is attached and cannot be removed; list every attached photo"
                    ),
                ));
            }
        }
        for image_id in &measurements.photo_image_ids {
            if current.measurements.photo_image_ids.contains(image_id) {
                continue;
            }
            let attached =
                store::assessments::attach_photo(&mut tx, &wound.id, image_id, assessment_id, next)
                    .await?;
            if !attached {
                return Err(unusable_photo(image_id));
            }
        }
        store::assessments::retire_current(&mut tx, assessment_id).await?;
        let version = AssessmentVersion {
            assessment_id: assessment_id.to_owned(),
            version: next,
            current: true,
            wound_id: wound.id.clone(),
            episode: current.episode,
            measurements,
            recorded_at: now,
            recorded_by: ActorRecord::of(caller),
            correction_reason: reason,
        };
        store::assessments::insert_version(&mut tx, &version).await?;
        let (view, raised, wound) = self
            .after_change(&mut tx, wound, assessment_id, now)
            .await?;
        let entry = AuditEntry::new(
            caller,
            "CorrectAssessment",
            "assessment",
            assessment_id,
            Outcome::Ok,
        );
        telehealth_kit::audit::stage(&mut tx, &entry).await?;
        let notices = self.stage_raised(&mut tx, &wound, &raised).await?;
        tx.commit().await?;
        self.flush_audit().await;
        self.announce_raised(&wound, &raised, notices);
        tracing::info!(%assessment_id, version = next, "assessment corrected");
        Ok((view, raised))
    }

    /// After an assessment of the current episode was stored or corrected (inside its
    /// transaction): raises the alerts it and its successor call for, and refreshes what the
    /// wound shows of its series. Returns the assessment's view, the alerts raised and the wound.
    async fn after_change(
        &self,
        tx: &mut sqlx::AnyConnection,
        mut wound: Wound,
        assessment_id: &str,
        now: Timestamp,
    ) -> Result<(AssessmentView, Vec<Alert>, Wound), WoundError> {
        let series = store::assessments::series(&mut *tx, &wound.id, Some(wound.episode)).await?;
        let points: Vec<_> = series.iter().map(point).collect();
        let index = points
            .iter()
            .position(|p| p.assessment_id == assessment_id)
            .ok_or(WoundError::NotFound("assessment"))?;
        let mut drafts = Vec::new();
        for i in [index, index + 1] {
            drafts.extend(scoring::assessment_alerts(
                &wound.id,
                wound.episode,
                &points,
                i,
                &self.rules,
            ));
        }
        let raised = alerts::raise(&mut *tx, &wound, drafts, now, None).await?;
        let (first, last) = (series.first(), series.last());
        wound.baseline_assessment_id = first.map(|v| v.assessment_id.clone());
        wound.last_assessment_id = last.map(|v| v.assessment_id.clone());
        wound.last_assessed_at = last.map(|v| v.measurements.assessed_at);
        wound.next_due_at = super::wounds::next_due(&wound);
        store::wounds::set_series_summary(
            &mut *tx,
            &wound.id,
            (
                wound.baseline_assessment_id.as_deref(),
                wound.last_assessment_id.as_deref(),
                wound.last_assessed_at,
            ),
            wound.next_due_at,
        )
        .await?;
        let view = views(series).swap_remove(index);
        Ok((view, raised, wound))
    }

    /// The assessment `id` (a version, or the current one) of a wound `identity` may see, with
    /// its figures; and the wound.
    async fn visible_assessment(
        &self,
        conn: &mut sqlx::AnyConnection,
        identity: &Identity,
        id: &str,
        version: Option<i64>,
    ) -> Result<(AssessmentView, Wound), WoundError> {
        let current = store::assessments::version(conn, id, None)
            .await?
            .ok_or(WoundError::NotFound("assessment"))?;
        let wound = self
            .wound_for(conn, identity, &current.wound_id, Access::Read)
            .await
            .map_err(|e| match e {
                WoundError::NotFound(_) => WoundError::NotFound("assessment"),
                other => other,
            })?;
        let wanted = match version {
            Some(v) if v != current.version => store::assessments::version(conn, id, Some(v))
                .await?
                .ok_or(WoundError::NotFound("assessment version"))?,
            _ => current,
        };
        let series = store::assessments::series(conn, &wound.id, Some(wanted.episode)).await?;
        Ok((super::view_within(series, wanted), wound))
    }

    /// One assessment (a version, or the current one), with its figures.
    pub async fn assessment(
        &self,
        caller: &Caller,
        id: &AssessmentId,
        version: Option<i64>,
    ) -> Result<AssessmentView, WoundError> {
        let result = async {
            let identity = person(caller)?;
            let mut conn = self.base.db().pool().acquire().await?;
            let (view, _) = self
                .visible_assessment(&mut conn, identity, id, version)
                .await?;
            Ok(view)
        }
        .await;
        self.audit_result(caller, "GetAssessment", "assessment", id, &result)
            .await;
        result
    }

    /// The assessments of a wound (current versions, of one episode or all), newest first, after
    /// the keyset `after` (assessed_at, id).
    pub async fn assessments(
        &self,
        caller: &Caller,
        wound_id: &WoundId,
        episode: Option<i64>,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<AssessmentView>, WoundError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        if let Err(error) = self
            .wound_for(&mut conn, identity, wound_id, Access::Read)
            .await
        {
            drop(conn);
            self.audit(
                caller,
                "ListAssessments",
                "wound",
                wound_id,
                Outcome::of(&error),
            )
            .await;
            return Err(error);
        }
        let series = store::assessments::series(&mut conn, wound_id, episode).await?;
        drop(conn);
        let mut all = views(series);
        all.reverse();
        let page: Vec<AssessmentView> = all
            .into_iter()
            .filter(|v| match &after {
                None => true,
                Some((at, id)) => {
                    let own = (
                        store::micros(v.version.measurements.assessed_at),
                        v.version.assessment_id.as_str(),
                    );
                    own < (*at, id.as_str())
                }
            })
            .take(limit)
            .collect();
        for view in &page {
            self.audit(
                caller,
                "ListAssessments",
                "assessment",
                &view.version.assessment_id,
                Outcome::Ok,
            )
            .await;
        }
        Ok(page)
    }

    /// The versions of an assessment after version `after`, oldest first.
    pub async fn versions(
        &self,
        caller: &Caller,
        id: &AssessmentId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AssessmentView>, WoundError> {
        let result = async {
            let identity = person(caller)?;
            let mut conn = self.base.db().pool().acquire().await?;
            let (current, wound) = self
                .visible_assessment(&mut conn, identity, id, None)
                .await?;
            let series =
                store::assessments::series(&mut conn, &wound.id, Some(current.version.episode))
                    .await?;
            let versions = store::assessments::versions(&mut conn, id, after, limit).await?;
            Ok(versions
                .into_iter()
                .map(|v| super::view_within(series.clone(), v))
                .collect())
        }
        .await;
        self.audit_result(caller, "ListAssessmentVersions", "assessment", id, &result)
            .await;
        result
    }

    /// The healing trend of a wound.
    pub async fn trend(
        &self,
        caller: &Caller,
        wound_id: &WoundId,
        query: TrendQuery,
    ) -> Result<Trend, WoundError> {
        let result = self.trend_inner(caller, wound_id, query).await;
        self.audit_result(caller, "GetWoundTrend", "wound", wound_id, &result)
            .await;
        result
    }

    async fn trend_inner(
        &self,
        caller: &Caller,
        wound_id: &str,
        query: TrendQuery,
    ) -> Result<Trend, WoundError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let wound = self
            .wound_for(&mut conn, identity, wound_id, Access::Read)
            .await?;
        let episode = (query.range.is_none() && !query.all_episodes).then_some(wound.episode);
        let series = store::assessments::series(&mut conn, wound_id, episode).await?;
        drop(conn);

        let current: Vec<_> = series
            .iter()
            .filter(|v| v.episode == wound.episode)
            .map(point)
            .collect();
        let closed_as_healed = wound
            .closure
            .as_ref()
            .is_some_and(|c| c.reason == crate::domain::ClosureReason::Healed);
        let latest = current
            .len()
            .checked_sub(1)
            .map(|i| scoring::figures(&current, i));
        let mut baselines = std::collections::HashMap::new();
        for version in &series {
            baselines
                .entry(version.episode)
                .or_insert(version.measurements.assessed_at);
        }
        let mut points: Vec<(AssessmentView, f64)> = views(series)
            .into_iter()
            .filter(|v| {
                query.range.is_none_or(|(start, end)| {
                    (start..end).contains(&v.version.measurements.assessed_at)
                })
            })
            .map(|v| {
                let baseline = baselines[&v.version.episode];
                let days = v
                    .version
                    .measurements
                    .assessed_at
                    .duration_since(baseline)
                    .as_secs_f64()
                    / 86_400.0;
                (v, (days * 100.0).round() / 100.0)
            })
            .collect();
        let truncated = points.len() > MAX_TREND_POINTS;
        if truncated {
            points.drain(..points.len() - MAX_TREND_POINTS);
        }
        Ok(Trend {
            wound_id: wound.id.clone(),
            area_method: query.area_method,
            points,
            truncated,
            baseline_assessment_id: current
                .first()
                .map(|p| p.assessment_id.clone())
                .unwrap_or_default(),
            from_baseline: latest.as_ref().and_then(|f| f.from_baseline),
            four_weeks: latest.and_then(|f| f.four_weeks.map(|(_, p)| p)),
            area_change_per_week: scoring::area_change_per_week(&current, query.area_method),
            healing_trend: scoring::healing_trend(&current, closed_as_healed, &self.rules),
        })
    }
}

/// Refuses an `assessed_at` in the future (beyond the clock skew), before the wound's onset, or
/// before the reopening that started the current episode.
fn check_assessed_at(wound: &Wound, at: Timestamp, now: Timestamp) -> Result<(), WoundError> {
    if at > now + CLOCK_SKEW {
        return Err(WoundError::invalid(
            "measurements.assessed_at",
            "is in the future (check the device's clock)",
        ));
    }
    if let Ok(onset) = wound.description.onset_date.parse::<Date>() {
        // The earliest instant the onset date can be anywhere (UTC+14), so no time zone is
        // refused a same-day assessment.
        let earliest = onset
            .to_zoned_datetime(TimeZone::UTC)
            .map(|z| z.timestamp() - SignedDuration::from_hours(14))
            .unwrap_or(Timestamp::MIN);
        if at < earliest {
            return Err(WoundError::invalid(
                "measurements.assessed_at",
                "is before the wound's onset date",
            ));
        }
    }
    if wound.episode > 1 && at < wound.episode_started_at - CLOCK_SKEW {
        return Err(WoundError::invalid(
            "measurements.assessed_at",
            "is before the wound was reopened (assessments of an earlier episode cannot be added)",
        ));
    }
    Ok(())
}

fn unusable_photo(image_id: &str) -> WoundError {
    WoundError::invalid(
        "measurements.photo_image_ids",
        format!("{image_id} is not a completed, unattached photo of this wound"),
    )
}
