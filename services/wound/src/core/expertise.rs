//! Asking a hospital specialist about a wound, in one step: the care team's nurse (or the
//! referring doctor) names the hospital, the specialty and the question; wound monitoring adds
//! the wound's assessment history and asks the tele-expertise service to create (and submit)
//! the request on that person's behalf, then links the request to the wound.

use futures::StreamExt;
use telehealth_images::{ImageId, StoredImage};
use telehealth_kit::{
    ApiError, ErrorCode,
    identity::{Caller, Role},
    record::{ActorRecord, json, micros, role_proto, timestamp},
};
use telehealth_proto::v1::{self as pb, expertise_service_client::ExpertiseServiceClient};
use tonic::{Code, transport::Channel};

use super::{WoundMonitor, person, photos::target, views};
use crate::{
    error::WoundError,
    model::{Access, WoundId},
    store,
};

/// Internal client of the tele-expertise service (wound monitoring's own certificate).
#[derive(Clone)]
pub struct ExpertiseRequests {
    client: ExpertiseServiceClient<Channel>,
}

impl ExpertiseRequests {
    /// Requests created through `channel` (to the tele-expertise service).
    pub fn new(channel: Channel) -> Self {
        ExpertiseRequests {
            client: ExpertiseServiceClient::new(channel),
        }
    }
}

/// What the person asks.
#[derive(Debug, Clone)]
pub struct WoundQuestion {
    pub idempotency_key: String,
    pub target_org_id: String,
    pub specialty: String,
    pub clinical_question: String,
    pub urgency: i32,
    /// Photos of the wound to copy into the request (distinct, at most [`MAX_SHARED_PHOTOS`]).
    pub photo_ids: Vec<ImageId>,
}

/// Most photos one request carries from the wound.
pub const MAX_SHARED_PHOTOS: usize = 10;

impl WoundMonitor {
    /// Creates (and submits, when the target needs no image) a tele-expertise request about
    /// `wound_id` carrying its history, on behalf of the caller; links it to the wound.
    pub async fn request_expertise(
        &self,
        caller: &Caller,
        wound_id: &WoundId,
        question: WoundQuestion,
    ) -> Result<pb::ExpertiseRequest, WoundError> {
        let result = self
            .request_expertise_inner(caller, wound_id, question)
            .await;
        self.audit_result(caller, "RequestWoundExpertise", "wound", wound_id, &result)
            .await;
        result
    }

    async fn request_expertise_inner(
        &self,
        caller: &Caller,
        wound_id: &str,
        question: WoundQuestion,
    ) -> Result<pb::ExpertiseRequest, WoundError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let wound = self
            .wound_for(&mut conn, identity, wound_id, Access::Change)
            .await?;
        let series = store::assessments::series(&mut conn, wound_id, Some(wound.episode)).await?;
        drop(conn);
        let mut photos = Vec::with_capacity(question.photo_ids.len());
        for photo_id in &question.photo_ids {
            let photo = self
                .images
                .image(&target(wound_id), photo_id)
                .await
                .map_err(|e| match e.code() {
                    ErrorCode::NotFound => WoundError::invalid(
                        "photo_ids",
                        format!("{photo_id} is not a photo of this wound"),
                    ),
                    _ => WoundError::Unavailable(e.to_string()),
                })?;
            photos.push(photo);
        }
        let history = views(series)
            .into_iter()
            .rev()
            .take(100)
            .rev()
            .map(|view| {
                let m = &view.version.measurements;
                pb::WoundHistoryPoint {
                    assessed_at: Some(timestamp(m.assessed_at)),
                    length_cm: m.length_mm as f64 / 10.0,
                    width_cm: m.width_mm as f64 / 10.0,
                    // Exact: L × W in mm², in hundredths of a cm².
                    area_cm2: (m.length_mm * m.width_mm) as f64 / 100.0,
                    push_score: view.push.total,
                }
            })
            .collect();
        let site = &wound.description.body_site;
        let body_site = match pb::BodyRegion::try_from(site.region) {
            Ok(region) if site.description.is_empty() => region.as_str_name().to_owned(),
            Ok(region) => format!("{} — {}", region.as_str_name(), site.description),
            Err(_) => site.description.clone(),
        };
        let content = pb::ExpertiseRequestContent {
            target_org_id: question.target_org_id,
            specialty: question.specialty,
            patient: Some(pb::ExpertisePatient {
                patient: Some(pb::PatientRef {
                    pseudonym: wound.patient_pseudonym.clone(),
                }),
                age_years: 0,
                age_months: 0,
                sex: pb::Sex::Unknown as i32,
            }),
            clinical_question: question.clinical_question,
            context: None,
            urgency: question.urgency,
            general_practitioner: None,
            requester_mssante_address: String::new(),
            wound: Some(pb::WoundContext {
                wound_id: wound.id.clone(),
                aetiology: pb::Aetiology::try_from(wound.description.aetiology as i32)
                    .map(|a| a.as_str_name().to_owned())
                    .unwrap_or_default(),
                body_site,
                history,
            }),
        };
        let requester = pb::Actor {
            subject: identity.subject.clone(),
            roles: identity
                .roles
                .iter()
                .filter(|r| matches!(r, Role::Doctor | Role::Nurse))
                .map(|r| role_proto(*r))
                .collect(),
            org_id: identity.org.clone(),
            service: String::new(),
        };
        let create = pb::CreateWoundRequestRequest {
            requester: Some(requester.clone()),
            idempotency_key: question.idempotency_key,
            content: Some(content),
            // With photos, submitted once they are all attached (below).
            submit: photos.is_empty(),
        };
        let mut created = self.create_wound_request(create.clone()).await?;
        // Linked before the photos are copied: a failure below leaves a request the wound
        // already names, and the retry (same key) finishes it.
        let mut conn = self.base.db().pool().acquire().await?;
        store::wounds::link_expertise_request(
            &mut conn,
            wound_id,
            &created.request_id,
            &json(&ActorRecord::of(caller)),
            micros(self.now()),
        )
        .await?;
        drop(conn);
        if !photos.is_empty() {
            for photo in &photos {
                self.copy_photo(&requester, &created.request_id, photo)
                    .await?;
            }
            // The same key and content: the service answers the request it created, and
            // submits it now that its images are attached.
            created = self
                .create_wound_request(pb::CreateWoundRequestRequest {
                    submit: true,
                    ..create
                })
                .await?;
        }
        tracing::info!(wound_id = %wound_id, request_id = %created.request_id, photos = photos.len(), "wound expertise requested");
        Ok(created)
    }

    async fn create_wound_request(
        &self,
        create: pb::CreateWoundRequestRequest,
    ) -> Result<pb::ExpertiseRequest, WoundError> {
        self.expertise
            .client
            .clone()
            .create_wound_request(create)
            .await
            .map_err(refusal)?
            .into_inner()
            .request
            .ok_or_else(|| {
                WoundError::Unavailable("the tele-expertise service answered no request".into())
            })
    }

    /// Streams the stored bytes of `photo` into request `request_id`, on behalf of
    /// `requester`. The photo's id names the upload session, so a repeated copy answers the
    /// image already attached instead of a second one.
    async fn copy_photo(
        &self,
        requester: &pb::Actor,
        request_id: &str,
        photo: &StoredImage,
    ) -> Result<(), WoundError> {
        let info = &photo.info;
        let header = pb::AttachWoundPhotoRequest {
            part: Some(pb::attach_wound_photo_request::Part::Header(
                pb::AttachWoundPhotoHeader {
                    requester: Some(requester.clone()),
                    attach: Some(pb::AttachImageHeader {
                        request_id: request_id.to_owned(),
                        image: Some(pb::ImageUploadHeader {
                            upload_session_id: info.image_id.clone(),
                            resume_offset: 0,
                            total_size_bytes: info.size_bytes,
                            declared_kind: info.kind,
                            body_site: info.body_site.clone(),
                            client_sha256_hex: info.sha256_hex.clone(),
                            caption: info.caption.clone(),
                            captured_at: info.captured_at,
                        }),
                    }),
                },
            )),
        };
        let chunks = self.images.download(photo, 0).await?;
        let messages =
            futures::stream::once(async { header }).chain(chunks.filter_map(|chunk| async move {
                match chunk {
                    Ok(chunk) => Some(pb::AttachWoundPhotoRequest {
                        part: Some(pb::attach_wound_photo_request::Part::Chunk(chunk)),
                    }),
                    Err(error) => {
                        // Ending the stream early leaves the upload short of its declared
                        // size: the tele-expertise service refuses it and keeps nothing.
                        tracing::warn!(%error, "a wound photo could not be read while copied");
                        None
                    }
                }
            }));
        self.expertise
            .client
            .clone()
            .attach_wound_photo(messages)
            .await
            .map_err(refusal)?;
        Ok(())
    }

    /// The tele-expertise requests asked about `wound_id` (the caller may read the wound).
    pub async fn expertise_requests_of(&self, wound_id: &str) -> Result<Vec<String>, WoundError> {
        let mut conn = self.base.db().pool().acquire().await?;
        store::wounds::expertise_requests(&mut conn, wound_id).await
    }
}

/// The tele-expertise service's refusal, as the caller's: its message says what to do (record
/// the consent, choose a target…).
fn refusal(status: tonic::Status) -> WoundError {
    let message = status.message().to_owned();
    match status.code() {
        Code::InvalidArgument => WoundError::invalid("expertise", message),
        Code::FailedPrecondition | Code::NotFound => WoundError::FailedPrecondition(message),
        Code::PermissionDenied => {
            WoundError::PermissionDenied("you may not request a tele-expertise")
        }
        _ => {
            tracing::warn!(%status, "the tele-expertise service did not create the request");
            WoundError::Unavailable("the tele-expertise service is unavailable, retry".into())
        }
    }
}
