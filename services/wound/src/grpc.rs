//! The tonic adapter: each RPC converts its request (validating it), calls the core, converts
//! the result back. No rule lives here: authorisation, transactions and audit are the core's.
//! The four photo RPCs are in [`photos`].

mod photos;

use std::time::Duration;

use futures::StreamExt;
use telehealth_kit::{
    error::reply,
    identity::require_caller,
    page_scope,
    paging::{self, PageTokens},
    watch::{self, Frame},
};
use telehealth_proto::v1::{self as pb, wound_service_server::WoundService};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    convert,
    core::{
        WoundMonitor,
        alerts::AlertEventKind,
        assessments::{NewAssessment, TrendQuery},
        lists::DoctorListQuery,
        wounds::NewWound,
    },
    error::WoundError,
    store::{self, wounds::DoctorKey},
};

/// How often an idle watch stream gets a heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// The gRPC face of the [`WoundMonitor`].
pub struct WoundApi {
    core: WoundMonitor,
    pages: PageTokens,
    shutdown: CancellationToken,
}

impl WoundApi {
    /// The API over `core`, paging with `pages`; watch streams end when `shutdown` fires.
    pub fn new(core: WoundMonitor, pages: PageTokens, shutdown: CancellationToken) -> Self {
        WoundApi {
            core,
            pages,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl WoundService for WoundApi {
    async fn register_wound(
        &self,
        request: Request<pb::RegisterWoundRequest>,
    ) -> Result<Response<pb::RegisterWoundResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let now = self.core.now();
        let result: Result<_, WoundError> = async {
            let new = NewWound {
                idempotency_key: convert::idempotency_key(&r.idempotency_key)?,
                patient_pseudonym: convert::pseudonym(r.patient.as_ref())?,
                description: convert::description(
                    r.description.as_ref(),
                    self.core.rules().default_interval_days,
                    now,
                )?,
                referring_doctor: convert::optional_subject(
                    "referring_doctor_subject",
                    &r.referring_doctor_subject,
                )?,
                nurses: convert::nurses(&r.care_team_nurse_subjects)?,
            };
            self.core.register(&caller, new).await
        }
        .await;
        reply(result, |(wound, _)| pb::RegisterWoundResponse {
            wound: Some(convert::wound(&wound, now)),
        })
    }

    async fn update_wound(
        &self,
        request: Request<pb::UpdateWoundRequest>,
    ) -> Result<Response<pb::UpdateWoundResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let now = self.core.now();
        let result: Result<_, WoundError> = async {
            let id = convert::id("wound_id", &r.wound_id)?;
            let description = convert::description(
                r.description.as_ref(),
                self.core.rules().default_interval_days,
                now,
            )?;
            self.core
                .update_description(&caller, &id, description, r.expected_version)
                .await
        }
        .await;
        reply(result, |wound| pb::UpdateWoundResponse {
            wound: Some(convert::wound(&wound, now)),
        })
    }

    async fn update_care_team(
        &self,
        request: Request<pb::UpdateCareTeamRequest>,
    ) -> Result<Response<pb::UpdateCareTeamResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let now = self.core.now();
        let result: Result<_, WoundError> = async {
            let id = convert::id("wound_id", &r.wound_id)?;
            let doctor =
                convert::optional_subject("referring_doctor_subject", &r.referring_doctor_subject)?;
            let nurses = convert::nurses(&r.care_team_nurse_subjects)?;
            self.core
                .update_care_team(&caller, &id, doctor, nurses, r.expected_version)
                .await
        }
        .await;
        reply(result, |wound| pb::UpdateCareTeamResponse {
            wound: Some(convert::wound(&wound, now)),
        })
    }

    async fn close_wound(
        &self,
        request: Request<pb::CloseWoundRequest>,
    ) -> Result<Response<pb::CloseWoundResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let now = self.core.now();
        let result: Result<_, WoundError> = async {
            let id = convert::id("wound_id", &r.wound_id)?;
            let (reason, comment) = convert::closure(r.reason, &r.comment)?;
            self.core.close(&caller, &id, reason, comment).await
        }
        .await;
        reply(result, |wound| pb::CloseWoundResponse {
            wound: Some(convert::wound(&wound, now)),
        })
    }

    async fn reopen_wound(
        &self,
        request: Request<pb::ReopenWoundRequest>,
    ) -> Result<Response<pb::ReopenWoundResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let now = self.core.now();
        let result: Result<_, WoundError> = async {
            let id = convert::id("wound_id", &r.wound_id)?;
            let comment = convert::text("comment", &r.comment, 2000)?;
            self.core.reopen(&caller, &id, comment).await
        }
        .await;
        reply(result, |wound| pb::ReopenWoundResponse {
            wound: Some(convert::wound(&wound, now)),
        })
    }

    async fn get_wound(
        &self,
        request: Request<pb::GetWoundRequest>,
    ) -> Result<Response<pb::GetWoundResponse>, Status> {
        let caller = require_caller(&request)?;
        let now = self.core.now();
        let result: Result<_, WoundError> = async {
            let id = convert::id("wound_id", &request.get_ref().wound_id)?;
            self.core.wound(&caller, &id).await
        }
        .await;
        let result = match result {
            Ok(wound) => self
                .core
                .expertise_requests_of(&wound.id)
                .await
                .map(|ids| (wound, ids)),
            Err(error) => Err(error),
        };
        reply(result, |(wound, expertise_request_ids)| {
            pb::GetWoundResponse {
                wound: Some(convert::wound(&wound, now)),
                expertise_request_ids,
            }
        })
    }

    async fn request_wound_expertise(
        &self,
        request: Request<pb::RequestWoundExpertiseRequest>,
    ) -> Result<Response<pb::RequestWoundExpertiseResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let id = convert::id("wound_id", &r.wound_id)?;
            let question = crate::core::expertise::WoundQuestion {
                idempotency_key: convert::idempotency_key(&r.idempotency_key)?,
                target_org_id: r.target_org_id,
                specialty: r.specialty,
                clinical_question: r.clinical_question,
                urgency: r.urgency,
                photo_ids: convert::photo_ids(r.photo_ids)?,
            };
            self.core.request_expertise(&caller, &id, question).await
        }
        .await;
        reply(result, |request| pb::RequestWoundExpertiseResponse {
            request: Some(request),
        })
    }

    async fn record_assessment(
        &self,
        request: Request<pb::RecordAssessmentRequest>,
    ) -> Result<Response<pb::RecordAssessmentResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let new = NewAssessment {
                idempotency_key: convert::idempotency_key(&r.idempotency_key)?,
                wound_id: convert::id("wound_id", &r.wound_id)?,
                measurements: convert::measurements(r.measurements.as_ref())?,
            };
            self.core.record(&caller, new).await
        }
        .await;
        let (view, raised, _) = result.map_err(Status::from)?;
        let mut assessment = convert::assessment(&view);
        self.describe_photos(&view.version.wound_id, &mut assessment)
            .await;
        Ok(Response::new(pb::RecordAssessmentResponse {
            assessment: Some(assessment),
            raised_alerts: raised.iter().map(convert::alert).collect(),
        }))
    }

    async fn correct_assessment(
        &self,
        request: Request<pb::CorrectAssessmentRequest>,
    ) -> Result<Response<pb::CorrectAssessmentResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let id = convert::id("assessment_id", &r.assessment_id)?;
            let measurements = convert::measurements(r.measurements.as_ref())?;
            let reason = convert::text("correction_reason", &r.correction_reason, 2000)?;
            if reason.is_empty() {
                return Err(WoundError::invalid(
                    "correction_reason",
                    "is required (why the assessment is corrected)",
                ));
            }
            if r.expected_version < 1 {
                return Err(WoundError::invalid(
                    "expected_version",
                    "is required: the current version of the assessment",
                ));
            }
            self.core
                .correct(
                    &caller,
                    &id,
                    measurements,
                    reason,
                    i64::from(r.expected_version),
                )
                .await
        }
        .await;
        let (view, raised) = result.map_err(Status::from)?;
        let mut assessment = convert::assessment(&view);
        self.describe_photos(&view.version.wound_id, &mut assessment)
            .await;
        Ok(Response::new(pb::CorrectAssessmentResponse {
            assessment: Some(assessment),
            raised_alerts: raised.iter().map(convert::alert).collect(),
        }))
    }

    async fn get_assessment(
        &self,
        request: Request<pb::GetAssessmentRequest>,
    ) -> Result<Response<pb::GetAssessmentResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let id = convert::id("assessment_id", &r.assessment_id)?;
            let version = match r.version {
                0 => None,
                v if v > 0 => Some(i64::from(v)),
                _ => return Err(WoundError::invalid("version", "must not be negative")),
            };
            self.core.assessment(&caller, &id, version).await
        }
        .await;
        let view = result.map_err(Status::from)?;
        let mut assessment = convert::assessment(&view);
        self.describe_photos(&view.version.wound_id, &mut assessment)
            .await;
        Ok(Response::new(pb::GetAssessmentResponse {
            assessment: Some(assessment),
        }))
    }

    async fn list_assessments(
        &self,
        request: Request<pb::ListAssessmentsRequest>,
    ) -> Result<Response<pb::ListAssessmentsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let id = convert::id("wound_id", &r.wound_id)?;
            if r.episode < 0 {
                return Err(WoundError::invalid("episode", "must not be negative"));
            }
            let episode = (r.episode > 0).then_some(i64::from(r.episode));
            let size = paging::page_size(r.page_size, 50, 200)?;
            let scope = page_scope!("ListAssessments", &caller, &r);
            let after = self
                .pages
                .position::<(i64, String)>(&scope, &r.page_token)?;
            let views = self
                .core
                .assessments(
                    &caller,
                    &id,
                    episode,
                    after,
                    usize::try_from(size + 1).unwrap_or(1),
                )
                .await?;
            Ok::<_, WoundError>(self.pages.page(&scope, views, size, |v| {
                (
                    store::micros(v.version.measurements.assessed_at),
                    v.version.assessment_id.clone(),
                )
            }))
        }
        .await;
        let (views, next) = result.map_err(Status::from)?;
        let mut assessments = Vec::with_capacity(views.len());
        for view in &views {
            let mut assessment = convert::assessment(view);
            self.describe_photos(&view.version.wound_id, &mut assessment)
                .await;
            assessments.push(assessment);
        }
        Ok(Response::new(pb::ListAssessmentsResponse {
            assessments,
            next_page_token: next,
        }))
    }

    async fn list_assessment_versions(
        &self,
        request: Request<pb::ListAssessmentVersionsRequest>,
    ) -> Result<Response<pb::ListAssessmentVersionsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let id = convert::id("assessment_id", &r.assessment_id)?;
            let size = paging::page_size(r.page_size, 50, 200)?;
            let scope = page_scope!("ListAssessmentVersions", &caller, &r);
            let after = self
                .pages
                .position::<i64>(&scope, &r.page_token)?
                .unwrap_or(0);
            let views = self.core.versions(&caller, &id, after, size + 1).await?;
            Ok::<_, WoundError>(self.pages.page(&scope, views, size, |v| v.version.version))
        }
        .await;
        let (views, next) = result.map_err(Status::from)?;
        let mut versions = Vec::with_capacity(views.len());
        for view in &views {
            let mut assessment = convert::assessment(view);
            self.describe_photos(&view.version.wound_id, &mut assessment)
                .await;
            versions.push(assessment);
        }
        Ok(Response::new(pb::ListAssessmentVersionsResponse {
            versions,
            next_page_token: next,
        }))
    }

    async fn upload_photo(
        &self,
        request: Request<Streaming<pb::UploadPhotoRequest>>,
    ) -> Result<Response<pb::UploadPhotoResponse>, Status> {
        self.upload(request).await
    }

    async fn upload_photo_part(
        &self,
        request: Request<pb::UploadPhotoPartRequest>,
    ) -> Result<Response<pb::UploadPhotoPartResponse>, Status> {
        self.upload_part(request).await
    }

    async fn get_photo_upload_status(
        &self,
        request: Request<pb::GetPhotoUploadStatusRequest>,
    ) -> Result<Response<pb::GetPhotoUploadStatusResponse>, Status> {
        self.upload_status(request).await
    }

    type DownloadPhotoStream = watch::ServerStream<pb::DownloadPhotoResponse>;

    async fn download_photo(
        &self,
        request: Request<pb::DownloadPhotoRequest>,
    ) -> Result<Response<Self::DownloadPhotoStream>, Status> {
        self.download(request).await
    }

    async fn get_photo_thumbnail(
        &self,
        request: Request<pb::GetPhotoThumbnailRequest>,
    ) -> Result<Response<pb::GetPhotoThumbnailResponse>, Status> {
        self.thumbnail(request).await
    }

    async fn get_wound_trend(
        &self,
        request: Request<pb::GetWoundTrendRequest>,
    ) -> Result<Response<pb::GetWoundTrendResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let id = convert::id("wound_id", &r.wound_id)?;
            let range = match &r.range {
                None => None,
                Some(range) => {
                    let start = convert::instant("range.start_time", range.start_time.as_ref())?;
                    let end = convert::instant("range.end_time", range.end_time.as_ref())?;
                    if end <= start {
                        return Err(WoundError::invalid(
                            "range",
                            "end_time must be after start_time",
                        ));
                    }
                    Some((start, end))
                }
            };
            let query = TrendQuery {
                area_method: convert::area_method(r.area_method)?,
                range,
                all_episodes: r.all_episodes,
            };
            self.core.trend(&caller, &id, query).await
        }
        .await;
        reply(result, |trend| pb::GetWoundTrendResponse {
            trend: Some(convert::trend(&trend)),
        })
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let wound = convert::optional_id("wound_id", &r.wound_id)?;
            let statuses = convert::alert_statuses(&r.statuses)?;
            let size = paging::page_size(r.page_size, 50, 200)?;
            let scope = page_scope!("ListAlerts", &caller, &r);
            let after = self
                .pages
                .position::<(i64, String)>(&scope, &r.page_token)?;
            let alerts = self
                .core
                .alerts(&caller, wound.as_ref(), statuses, after, size + 1)
                .await?;
            Ok(self.pages.page(&scope, alerts, size, |a| {
                (store::micros(a.raised_at), a.id.clone())
            }))
        }
        .await;
        reply(result, |(alerts, next)| pb::ListAlertsResponse {
            alerts: alerts.iter().map(convert::alert).collect(),
            next_page_token: next,
        })
    }

    async fn acknowledge_alert(
        &self,
        request: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::AcknowledgeAlertResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, WoundError> = async {
            let id = convert::id("alert_id", &r.alert_id)?;
            let comment = convert::text("comment", &r.comment, 2000)?;
            if comment.is_empty() {
                return Err(WoundError::invalid(
                    "comment",
                    "is required (the decision taken)",
                ));
            }
            self.core.acknowledge(&caller, &id, comment).await
        }
        .await;
        reply(result, |alert| pb::AcknowledgeAlertResponse {
            alert: Some(convert::alert(&alert)),
        })
    }

    type WatchAlertsStream = watch::ServerStream<pb::WatchAlertsResponse>;

    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let caller = require_caller(&request)?;
        let wound = convert::optional_id("wound_id", &request.get_ref().wound_id)?;
        let events = self.core.watch(&caller, wound).await?;
        let events = events.filter_map(|event| async move {
            match event {
                Ok(event) => Some(Ok(event)),
                // An alert the caller may no longer see: skip it.
                Err(WoundError::NotFound(_)) => None,
                Err(error) => Some(Err(Status::from(error))),
            }
        });
        use pb::watch_alerts_response::Payload;
        let stream = watch::server_stream(events, HEARTBEAT, self.shutdown.clone(), |frame| {
            let payload = match frame {
                Frame::Ready(at) => Payload::Ready(pb::WatchReady {
                    server_time: Some(at),
                }),
                Frame::Event((kind, alert)) => Payload::Event(pb::AlertEvent {
                    kind: match kind {
                        AlertEventKind::Raised => pb::AlertEventKind::Raised,
                        AlertEventKind::Acknowledged => pb::AlertEventKind::Acknowledged,
                    } as i32,
                    alert: Some(convert::alert(&alert)),
                }),
                Frame::Heartbeat(at) => Payload::Heartbeat(pb::WatchHeartbeat {
                    server_time: Some(at),
                }),
            };
            pb::WatchAlertsResponse {
                payload: Some(payload),
            }
        });
        Ok(Response::new(stream))
    }

    async fn list_nurse_round(
        &self,
        request: Request<pb::ListNurseRoundRequest>,
    ) -> Result<Response<pb::ListNurseRoundResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let now = self.core.now();
        let result: Result<_, WoundError> = async {
            let due_before = r
                .due_before
                .as_ref()
                .map(|t| convert::instant("due_before", Some(t)))
                .transpose()?;
            let size = paging::page_size(r.page_size, 50, 200)?;
            let scope = page_scope!("ListNurseRound", &caller, &r);
            let after = self
                .pages
                .position::<(i64, String)>(&scope, &r.page_token)?;
            let found = self
                .core
                .nurse_round(&caller, due_before, after, size + 1)
                .await?;
            Ok(self.pages.page(&scope, found, size, |s| {
                (
                    s.wound.next_due_at.map_or(i64::MAX, store::micros),
                    s.wound.id.clone(),
                )
            }))
        }
        .await;
        reply(result, |(found, next)| pb::ListNurseRoundResponse {
            wounds: found.iter().map(|s| convert::summary(s, now)).collect(),
            next_page_token: next,
        })
    }

    async fn list_doctor_wounds(
        &self,
        request: Request<pb::ListDoctorWoundsRequest>,
    ) -> Result<Response<pb::ListDoctorWoundsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let now = self.core.now();
        let result: Result<_, WoundError> = async {
            let query = DoctorListQuery {
                statuses: convert::wound_statuses(&r.statuses)?,
                whole_org: r.whole_org,
                patient_pseudonym: match &r.patient {
                    Some(patient) if !patient.pseudonym.is_empty() => {
                        Some(convert::pseudonym(Some(patient))?)
                    }
                    _ => None,
                },
            };
            let size = paging::page_size(r.page_size, 50, 200)?;
            let scope = page_scope!("ListDoctorWounds", &caller, &r);
            let after = self.pages.position::<DoctorKey>(&scope, &r.page_token)?;
            let found = self
                .core
                .doctor_wounds(&caller, query, after, size + 1)
                .await?;
            Ok(self.pages.page(&scope, found, size, |(_, key)| key.clone()))
        }
        .await;
        reply(result, |(found, next)| pb::ListDoctorWoundsResponse {
            wounds: found
                .iter()
                .map(|(s, _)| convert::summary(s, now))
                .collect(),
            next_page_token: next,
        })
    }
}
