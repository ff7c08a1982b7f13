//! The tonic adapter: each RPC converts its request (validating it), calls the core and converts
//! the result back. No rule lives here. The image RPCs are in [`images`].

mod images;

use std::time::Duration;

use futures::StreamExt;
use jiff::{civil::Date, tz::TimeZone};
use telehealth_kit::{
    identity::{Caller, require_caller},
    page_scope,
    paging::{self, PageTokens},
    watch::{self, Frame},
};
use telehealth_proto::v1::{self as pb, expertise_service_server::ExpertiseService};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    convert,
    core::{
        Expertise,
        reading::{InboxQuery, WatchQuery},
        requests::Details,
    },
    error::{ExpertiseError, status},
    model::{RequestId, Status as RequestStatus, Transition},
    render,
};

/// The gRPC face of the [`Expertise`] core.
pub struct ExpertiseApi {
    core: Expertise,
    pages: PageTokens,
    shutdown: CancellationToken,
    heartbeat: Duration,
}

impl ExpertiseApi {
    /// The API over `core`, paging with `pages`; watch streams end when `shutdown` fires.
    pub fn new(core: Expertise, pages: PageTokens, shutdown: CancellationToken) -> Self {
        let heartbeat = Duration::from_secs(core.rules().watch_heartbeat_seconds);
        ExpertiseApi {
            core,
            pages,
            shutdown,
            heartbeat,
        }
    }

    /// A request as the contract writes it, with its images.
    async fn pb_request(&self, request: &crate::model::Request) -> pb::ExpertiseRequest {
        let images = self.images_of(&request.id).await;
        convert::request(request, self.core.now(), images)
    }
}

impl ExpertiseApi {
    async fn change(
        &self,
        caller: &Caller,
        id: &RequestId,
        transition: Transition,
        details: Details,
        expected_version: i64,
    ) -> Result<pb::ExpertiseRequest, Status> {
        let request = self
            .core
            .transition(caller, id, transition, details, expected_version)
            .await
            .map_err(|e| status(&e))?;
        Ok(self.pb_request(&request).await)
    }
}

#[tonic::async_trait]
impl ExpertiseService for ExpertiseApi {
    async fn list_targets(
        &self,
        request: Request<pb::ListTargetsRequest>,
    ) -> Result<Response<pb::ListTargetsResponse>, Status> {
        require_caller(&request)?;
        let filter = request.into_inner().specialty;
        let rules = self.core.rules();
        let mut targets: Vec<pb::ExpertiseTarget> = rules
            .targets
            .iter()
            .filter(|t| filter.is_empty() || t.specialty == filter)
            .map(|t| pb::ExpertiseTarget {
                org_id: t.org_id.clone(),
                org_display_name: t.org_display_name.clone(),
                specialty: t.specialty.clone(),
                specialty_display_name: t.specialty_display_name.clone(),
                routine_delay: Some(convert::duration(jiff::SignedDuration::from_hours(
                    i64::from(t.routine_delay_hours(rules)),
                ))),
                urgent_delay: Some(convert::duration(jiff::SignedDuration::from_hours(
                    i64::from(t.urgent_delay_hours(rules)),
                ))),
            })
            .collect();
        targets.sort_by(|a, b| {
            (&a.specialty, &a.org_display_name, &a.org_id).cmp(&(
                &b.specialty,
                &b.org_display_name,
                &b.org_id,
            ))
        });
        Ok(Response::new(pb::ListTargetsResponse { targets }))
    }

    async fn create_draft(
        &self,
        request: Request<pb::CreateDraftRequest>,
    ) -> Result<Response<pb::CreateDraftResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let created = async {
            let key = convert::idempotency_key(&r.idempotency_key)?;
            let content = convert::content(r.content.as_ref())?;
            self.core.create_draft(&caller, &key, content).await
        }
        .await
        .map_err(|e| status(&e))?;
        Ok(Response::new(pb::CreateDraftResponse {
            request: Some(self.pb_request(&created).await),
        }))
    }

    async fn create_wound_request(
        &self,
        request: Request<pb::CreateWoundRequestRequest>,
    ) -> Result<Response<pb::CreateWoundRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let created = async {
            let key = convert::idempotency_key(&r.idempotency_key)?;
            let content = convert::wound_content(r.content.as_ref())?;
            let requester = r
                .requester
                .as_ref()
                .ok_or_else(|| crate::error::ExpertiseError::invalid("requester", "is required"))?;
            self.core
                .create_wound_request(&caller, requester, &key, content, r.submit)
                .await
        }
        .await
        .map_err(|e| status(&e))?;
        Ok(Response::new(pb::CreateWoundRequestResponse {
            request: Some(self.pb_request(&created).await),
        }))
    }

    async fn update_draft(
        &self,
        request: Request<pb::UpdateDraftRequest>,
    ) -> Result<Response<pb::UpdateDraftResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let updated = async {
            let id = convert::id("request_id", &r.request_id)?;
            let content = convert::content(r.content.as_ref())?;
            self.core
                .update_draft(&caller, &id, content, r.expected_version)
                .await
        }
        .await
        .map_err(|e| status(&e))?;
        Ok(Response::new(pb::UpdateDraftResponse {
            request: Some(self.pb_request(&updated).await),
        }))
    }

    async fn attach_image(
        &self,
        request: Request<Streaming<pb::AttachImageRequest>>,
    ) -> Result<Response<pb::AttachImageResponse>, Status> {
        self.attach(request).await
    }

    async fn attach_wound_photo(
        &self,
        request: Request<Streaming<pb::AttachWoundPhotoRequest>>,
    ) -> Result<Response<pb::AttachImageResponse>, Status> {
        self.attach_wound_photo(request).await
    }

    async fn attach_image_part(
        &self,
        request: Request<pb::AttachImagePartRequest>,
    ) -> Result<Response<pb::AttachImagePartResponse>, Status> {
        self.attach_part(request).await
    }

    async fn get_image_upload_status(
        &self,
        request: Request<pb::GetImageUploadStatusRequest>,
    ) -> Result<Response<pb::GetImageUploadStatusResponse>, Status> {
        self.upload_status(request).await
    }

    async fn detach_image(
        &self,
        request: Request<pb::DetachImageRequest>,
    ) -> Result<Response<pb::DetachImageResponse>, Status> {
        self.detach(request).await
    }

    type DownloadImageStream = watch::ServerStream<pb::DownloadImageResponse>;

    async fn download_image(
        &self,
        request: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        self.download(request).await
    }

    async fn get_image_thumbnail(
        &self,
        request: Request<pb::GetImageThumbnailRequest>,
    ) -> Result<Response<pb::GetImageThumbnailResponse>, Status> {
        self.thumbnail(request).await
    }

    async fn submit_request(
        &self,
        request: Request<pb::SubmitRequestRequest>,
    ) -> Result<Response<pb::SubmitRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let request = self
            .change(
                &caller,
                &convert::id("request_id", &r.request_id).map_err(|e| status(&e))?,
                Transition::Submit,
                Details::None,
                r.expected_version,
            )
            .await?;
        Ok(Response::new(pb::SubmitRequestResponse {
            request: Some(request),
        }))
    }

    async fn claim_request(
        &self,
        request: Request<pb::ClaimRequestRequest>,
    ) -> Result<Response<pb::ClaimRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let request = self
            .change(
                &caller,
                &convert::id("request_id", &r.request_id).map_err(|e| status(&e))?,
                Transition::Claim,
                Details::None,
                0,
            )
            .await?;
        Ok(Response::new(pb::ClaimRequestResponse {
            request: Some(request),
        }))
    }

    async fn release_request(
        &self,
        request: Request<pb::ReleaseRequestRequest>,
    ) -> Result<Response<pb::ReleaseRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let comment = convert::text("comment", &r.comment, 500).map_err(|e| status(&e))?;
        let request = self
            .change(
                &caller,
                &convert::id("request_id", &r.request_id).map_err(|e| status(&e))?,
                Transition::Release,
                Details::Release { comment },
                0,
            )
            .await?;
        Ok(Response::new(pb::ReleaseRequestResponse {
            request: Some(request),
        }))
    }

    async fn answer_request(
        &self,
        request: Request<pb::AnswerRequestRequest>,
    ) -> Result<Response<pb::AnswerRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let id: RequestId = convert::id("request_id", &r.request_id).map_err(|e| status(&e))?;
        let answer = convert::answer(r.answer.as_ref()).map_err(|e| status(&e))?;
        let request = self
            .change(&caller, &id, Transition::Answer, Details::Answer(answer), 0)
            .await?;
        Ok(Response::new(pb::AnswerRequestResponse {
            request: Some(request),
        }))
    }

    async fn decline_request(
        &self,
        request: Request<pb::DeclineRequestRequest>,
    ) -> Result<Response<pb::DeclineRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let id: RequestId = convert::id("request_id", &r.request_id).map_err(|e| status(&e))?;
        let (reason, comment) = convert::decline(r.reason, &r.comment).map_err(|e| status(&e))?;
        let request = self
            .change(
                &caller,
                &id,
                Transition::Decline,
                Details::Decline { reason, comment },
                0,
            )
            .await?;
        Ok(Response::new(pb::DeclineRequestResponse {
            request: Some(request),
        }))
    }

    async fn withdraw_request(
        &self,
        request: Request<pb::WithdrawRequestRequest>,
    ) -> Result<Response<pb::WithdrawRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let reason = convert::text("reason", &r.reason, 2000).map_err(|e| status(&e))?;
        let request = self
            .change(
                &caller,
                &convert::id("request_id", &r.request_id).map_err(|e| status(&e))?,
                Transition::Withdraw,
                Details::Withdraw { reason },
                0,
            )
            .await?;
        Ok(Response::new(pb::WithdrawRequestResponse {
            request: Some(request),
        }))
    }

    async fn close_request(
        &self,
        request: Request<pb::CloseRequestRequest>,
    ) -> Result<Response<pb::CloseRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let request = self
            .change(
                &caller,
                &convert::id("request_id", &r.request_id).map_err(|e| status(&e))?,
                Transition::Close,
                Details::None,
                0,
            )
            .await?;
        Ok(Response::new(pb::CloseRequestResponse {
            request: Some(request),
        }))
    }

    async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Result<Response<pb::PostMessageResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let message = async {
            let id = convert::id("request_id", &r.request_id)?;
            let key = convert::idempotency_key(&r.idempotency_key)?;
            let text = convert::required_text("text", &r.text, 4000)?;
            self.core.post_message(&caller, &id, &key, &text).await
        }
        .await
        .map_err(|e| status(&e))?;
        Ok(Response::new(pb::PostMessageResponse {
            message: Some(convert::message(&message)),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let page = async {
            let id = convert::id("request_id", &r.request_id)?;
            let size = paging::page_size(r.page_size, 100, 500)?;
            let scope = page_scope!("ListMessages", &caller, &r);
            let after = self
                .pages
                .position::<i64>(&scope, &r.page_token)?
                .unwrap_or(0);
            let messages = self.core.messages(&caller, &id, after, size + 1).await?;
            Ok::<_, ExpertiseError>(self.pages.page(&scope, messages, size, |m| m.sequence))
        }
        .await
        .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: page.0.iter().map(convert::message).collect(),
            next_page_token: page.1,
        }))
    }

    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::GetRequestResponse>, Status> {
        let caller = require_caller(&request)?;
        let found = async {
            let id = convert::id("request_id", &request.get_ref().request_id)?;
            self.core.request(&caller, &id).await
        }
        .await
        .map_err(|e| status(&e))?;
        let mut request = self.pb_request(&found).await;
        request.report_deliveries = self
            .core
            .deliveries(&found.id)
            .await
            .map_err(|e| status(&e))?
            .iter()
            .map(convert::delivery)
            .collect();
        request.pacs_transfers = self
            .core
            .transfers(&found.id)
            .await
            .map_err(|e| status(&e))?
            .iter()
            .map(convert::transfer)
            .collect();
        Ok(Response::new(pb::GetRequestResponse {
            request: Some(request),
        }))
    }

    async fn list_inbox(
        &self,
        request: Request<pb::ListInboxRequest>,
    ) -> Result<Response<pb::ListInboxResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let page = async {
            let statuses = convert::statuses(&r.statuses)?;
            if statuses.contains(&RequestStatus::Draft) {
                return Err(ExpertiseError::invalid(
                    "statuses",
                    "drafts never appear in an inbox",
                ));
            }
            let size = paging::page_size(r.page_size, 50, 200)?;
            let scope = page_scope!("ListInbox", &caller, &r);
            // The first page fixes the instant "overdue" is judged at, for the whole listing.
            let (as_of, after) = match self
                .pages
                .position::<(i64, i64, i64, String)>(&scope, &r.page_token)?
            {
                None => (self.core.now(), None),
                Some((as_of, rank, due, id)) => {
                    (crate::store::instant(as_of), Some((rank, due, id)))
                }
            };
            let query = InboxQuery {
                statuses,
                claimed_by_me: r.claimed_by_me,
                overdue_only: r.overdue_only,
            };
            let found = self
                .core
                .inbox(&caller, &query, as_of, after.as_ref(), size + 1)
                .await?;
            let as_of = crate::store::micros(as_of);
            Ok(self
                .pages
                .page(&scope, found, size, |(_, (rank, due, id))| {
                    (as_of, *rank, *due, id.clone())
                }))
        }
        .await
        .map_err(|e| status(&e))?;
        let mut requests = Vec::with_capacity(page.0.len());
        for (request, _) in &page.0 {
            requests.push(self.pb_request(request).await);
        }
        Ok(Response::new(pb::ListInboxResponse {
            requests,
            next_page_token: page.1,
        }))
    }

    async fn list_my_requests(
        &self,
        request: Request<pb::ListMyRequestsRequest>,
    ) -> Result<Response<pb::ListMyRequestsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let page = async {
            let statuses = convert::statuses(&r.statuses)?;
            let patient = match r.patient.as_ref().map(|p| p.pseudonym.as_str()) {
                Some(value) if !value.is_empty() => {
                    Some(telehealth_kit::ids::pseudonym("patient.pseudonym", value)?)
                }
                _ => None,
            };
            let size = paging::page_size(r.page_size, 50, 200)?;
            let scope = page_scope!("ListMyRequests", &caller, &r);
            let after = self
                .pages
                .position::<(i64, String)>(&scope, &r.page_token)?;
            let found = self
                .core
                .my_requests(
                    &caller,
                    statuses,
                    r.whole_org,
                    patient,
                    after.as_ref(),
                    size + 1,
                )
                .await?;
            Ok::<_, ExpertiseError>(self.pages.page(&scope, found, size, |r| {
                (crate::store::micros(r.created_at), r.id.clone())
            }))
        }
        .await
        .map_err(|e| status(&e))?;
        let mut requests = Vec::with_capacity(page.0.len());
        for request in &page.0 {
            requests.push(self.pb_request(request).await);
        }
        Ok(Response::new(pb::ListMyRequestsResponse {
            requests,
            next_page_token: page.1,
        }))
    }

    type WatchRequestsStream = watch::ServerStream<pb::WatchRequestsResponse>;

    async fn watch_requests(
        &self,
        request: Request<pb::WatchRequestsRequest>,
    ) -> Result<Response<Self::WatchRequestsStream>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let request_id = if r.request_id.is_empty() {
            None
        } else {
            Some(convert::id("request_id", &r.request_id).map_err(|e| status(&e))?)
        };
        let deliveries = self
            .core
            .watch(
                &caller,
                WatchQuery {
                    request_id,
                    whole_org: r.whole_org,
                },
            )
            .await
            .map_err(|e| status(&e))?;
        let core = self.core.clone();
        let deliveries = deliveries.map(|delivery| delivery.map_err(|e| status(&e)));
        use pb::watch_requests_response::Payload;
        let stream = watch::server_stream(deliveries, self.heartbeat, self.shutdown.clone(), {
            move |frame| {
                let payload = match frame {
                    Frame::Ready(at) => Payload::Ready(pb::WatchReady {
                        server_time: Some(at),
                    }),
                    Frame::Event(delivery) => Payload::Event(pb::ExpertiseEvent {
                        event_id: delivery.event.id.clone(),
                        kind: delivery.event.kind as i32,
                        occurred_at: Some(convert::timestamp(delivery.event.occurred_at)),
                        actor: Some(delivery.event.actor.to_proto()),
                        request: Some(convert::request(&delivery.request, core.now(), Vec::new())),
                        message: delivery.message.as_ref().map(convert::message),
                    }),
                    Frame::Heartbeat(at) => Payload::Heartbeat(pb::WatchHeartbeat {
                        server_time: Some(at),
                    }),
                };
                pb::WatchRequestsResponse {
                    payload: Some(payload),
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_activity_report(
        &self,
        request: Request<pb::GetActivityReportRequest>,
    ) -> Result<Response<pb::GetActivityReportResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let report = async {
            let first_day = month(&r.month)?;
            let zone = if r.time_zone.is_empty() {
                TimeZone::get("Europe/Paris")
            } else {
                TimeZone::get(&r.time_zone)
            }
            .map_err(|_| ExpertiseError::invalid("time_zone", "is not a known IANA time zone"))?;
            if !r.org_id.is_empty() {
                convert::required_text("org_id", &r.org_id, 128)?;
            }
            self.core
                .activity_report(&caller, &r.org_id, first_day, &zone)
                .await
        }
        .await
        .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetActivityReportResponse {
            report: Some(convert::activity_report(&report)),
        }))
    }

    async fn get_answer_report(
        &self,
        request: Request<pb::GetAnswerReportRequest>,
    ) -> Result<Response<pb::GetAnswerReportResponse>, Status> {
        let caller = require_caller(&request)?;
        let found = async {
            let id = convert::id("request_id", &request.get_ref().request_id)?;
            self.core.answer_report(&caller, &id).await
        }
        .await
        .map_err(|e| status(&e))?;
        let images = self.images_of(&found.id).await;
        let lines: Vec<render::ImageLine> = images
            .iter()
            .map(|i| render::ImageLine {
                kind: pb::ImageKind::try_from(i.kind)
                    .map(|k| {
                        k.as_str_name()
                            .trim_start_matches("IMAGE_KIND_")
                            .to_lowercase()
                    })
                    .unwrap_or_default(),
                sha256_hex: i.sha256_hex.clone(),
                caption: i.caption.clone(),
            })
            .collect();
        let now = self.core.now();
        let paris = TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC);
        let c = &found.content;
        let expert = found.claimed_by.clone().unwrap_or_default();
        let report = pb::AnswerReport {
            request_id: found.id.clone(),
            generated_at: Some(convert::timestamp(now)),
            requester: Some(found.requester.to_proto()),
            requester_org_id: found.requester_org.clone(),
            expert: Some(expert.to_proto()),
            expert_org_id: expert.org_id.clone(),
            specialty: c.specialty.clone(),
            patient: c.patient.as_ref().map(convert::patient),
            clinical_question: c.clinical_question.clone(),
            context: c.context.as_ref().map(convert::context),
            urgency: c.urgency.number(),
            submitted_at: found.submitted_at.map(convert::timestamp),
            answered_at: found.answered_at.map(convert::timestamp),
            answer: found.answer.as_ref().map(convert::pb_answer),
            text: render::answer_report_text(&found, &lines, now, &paris),
            consent_id: found.consent_id.clone().unwrap_or_default(),
            images,
            general_practitioner: c
                .general_practitioner
                .as_ref()
                .map(convert::general_practitioner),
        };
        Ok(Response::new(pb::GetAnswerReportResponse {
            report: Some(report),
        }))
    }
}

/// The first day of a `YYYY-MM` month.
fn month(value: &str) -> Result<Date, ExpertiseError> {
    let invalid = || ExpertiseError::invalid("month", "must be YYYY-MM, e.g. 2026-01");
    let (year, month) = value.split_once('-').ok_or_else(invalid)?;
    if year.len() != 4 || month.len() != 2 {
        return Err(invalid());
    }
    let year: i16 = year.parse().map_err(|_| invalid())?;
    let month: i8 = month.parse().map_err(|_| invalid())?;
    Date::new(year, month, 1).map_err(|_| invalid())
}
