//! The four photo RPCs, on the shared image pipeline (`telehealth_kit::images`): resumable
//! uploads attached to an assessment or kept pending, upload status, downloads and thumbnails.
//!
//! The pipeline keeps the bytes and the `ImageInfo` (target `("wound", wound id)`); this service
//! keeps which assessment each photo belongs to (`wound_photos`), decided inside the pipeline's
//! completion transaction by [`WoundUpload::admit`], so a photo is attached (or pending) exactly
//! when it becomes visible.

use std::{collections::HashMap, pin::Pin};

use futures::{Stream, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use sqlx::AnyConnection;
use telehealth_kit::{
    ApiError, Database,
    audit::{AuditEntry, Outcome},
    error::to_status,
    identity::{Caller, Identity},
    images::{ImageError, ImageStore, TargetRef, UploadTarget},
};
use telehealth_proto::v1 as pb;
use tonic::{Status, Streaming};

use crate::{
    convert,
    core::{WoundMonitor, outcome_of, person},
    domain::MAX_PHOTOS,
    error::WoundError,
    model::{Access, WoundStatus},
    store,
};

/// What a wound photo may be.
const ACCEPTED: [pb::ImageKind; 2] = [pb::ImageKind::WoundPhoto, pb::ImageKind::Overview];
/// Default longest edge of a thumbnail.
const DEFAULT_THUMBNAIL_EDGE: i32 = 256;

/// The photo side of the wound API.
#[derive(Clone)]
pub struct Photos {
    images: ImageStore,
    db: Database,
}

type DownloadStream = Pin<Box<dyn Stream<Item = Result<pb::DownloadPhotoResponse, Status>> + Send>>;

fn target(wound_id: &str) -> TargetRef {
    TargetRef {
        kind: "wound",
        id: wound_id.to_owned(),
    }
}

fn status(error: &WoundError) -> Status {
    to_status(error)
}

impl Photos {
    /// The photo RPCs over the service's image pipeline and database.
    pub fn new(images: ImageStore, db: Database) -> Photos {
        Photos { images, db }
    }

    /// Completes the `ImageInfo` of each photo of `assessment` (of wound `wound_id`); a photo
    /// the pipeline no longer knows keeps its id only.
    pub async fn describe(&self, wound_id: &str, assessment: &mut pb::Assessment) {
        if assessment.photos.is_empty() {
            return;
        }
        let infos = async {
            let mut conn = self.db.pool().acquire().await.ok()?;
            ImageStore::images_of(&mut conn, &target(wound_id))
                .await
                .ok()
        }
        .await
        .unwrap_or_default();
        let mut by_id: HashMap<String, pb::ImageInfo> = infos
            .into_iter()
            .map(|info| (info.image_id.clone(), info))
            .collect();
        for photo in &mut assessment.photos {
            if let Some(info) = by_id.remove(&photo.image_id) {
                *photo = info;
            }
        }
    }

    /// `UploadPhoto`: the header first, then chunks; resumable (see images.proto).
    pub async fn upload(
        &self,
        core: &WoundMonitor,
        caller: &Caller,
        mut stream: Streaming<pb::UploadPhotoRequest>,
    ) -> Result<pb::UploadPhotoResponse, Status> {
        let first = stream.next().await.ok_or_else(|| {
            Status::invalid_argument("the stream is empty: send the header first")
        })??;
        let Some(pb::upload_photo_request::Part::Header(header)) = first.part else {
            return Err(Status::invalid_argument(
                "the first message must be the header",
            ));
        };
        let wound_id = convert::id("wound_id", &header.wound_id).map_err(|e| status(&e))?;
        let result = self
            .upload_inner(core, caller, &wound_id, header, stream)
            .await;
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(status) => match status.code() {
                tonic::Code::NotFound => Outcome::NotFound,
                tonic::Code::PermissionDenied => Outcome::Denied,
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => Outcome::Invalid,
                _ => Outcome::Failed,
            },
        };
        let fresh = result
            .as_ref()
            .ok()
            .and_then(|r| r.result.as_ref())
            .is_some_and(|r| !r.already_completed);
        if fresh {
            // A new photo staged its record in its own transaction.
            core.flush_audit().await;
        } else {
            let record = result
                .as_ref()
                .ok()
                .and_then(|r| r.result.as_ref())
                .and_then(|r| r.image.as_ref())
                .map(|i| ("image", i.image_id.clone()))
                .unwrap_or(("wound", wound_id.clone()));
            core.audit(caller, "UploadPhoto", record.0, &record.1, outcome)
                .await;
        }
        result
    }

    async fn upload_inner(
        &self,
        core: &WoundMonitor,
        caller: &Caller,
        wound_id: &str,
        header: pb::UploadPhotoHeader,
        stream: Streaming<pb::UploadPhotoRequest>,
    ) -> Result<pb::UploadPhotoResponse, Status> {
        let identity = person(caller).map_err(|e| status(&e))?;
        let assessment_id =
            convert::optional_id("assessment_id", &header.assessment_id).map_err(|e| status(&e))?;
        let image_header = header
            .image
            .ok_or_else(|| Status::invalid_argument("image: the image header is required"))?;
        {
            let mut conn = self
                .db
                .pool()
                .acquire()
                .await
                .map_err(|e| status(&WoundError::from(e)))?;
            let wound = core
                .wound_for_nurse(&mut conn, identity, wound_id)
                .await
                .map_err(|e| status(&e))?;
            if wound.status == WoundStatus::Closed {
                return Err(Status::failed_precondition(
                    "the wound is closed; reopen it to add photos",
                ));
            }
            if let Some(id) = &assessment_id {
                let known = store::assessments::version(&mut conn, id, None)
                    .await
                    .map_err(|e| status(&e))?
                    .is_some_and(|v| v.wound_id == wound_id);
                if !known {
                    return Err(status(&WoundError::NotFound("assessment")));
                }
            }
        }
        let chunks = Box::pin(stream.map(|message| match message?.part {
            Some(pb::upload_photo_request::Part::Chunk(chunk)) => Ok(chunk),
            _ => Err(Status::invalid_argument(
                "every message after the header must be a chunk",
            )),
        }));
        let target = WoundUpload {
            wound_id: wound_id.to_owned(),
            assessment_id: assessment_id.clone(),
            uploader: identity.subject.clone(),
            caller: caller.clone(),
            pending_until: core.now() + core.rules().pending_photo_lifetime,
        };
        let result = self
            .images
            .upload(identity, &target, image_header, &ACCEPTED, chunks)
            .await
            .map_err(|e| to_status(&e))?;
        // On a repeated completed session, say where the photo is now.
        let attached_to = match result.image.as_ref() {
            Some(image) => {
                let mut conn = self
                    .db
                    .pool()
                    .acquire()
                    .await
                    .map_err(|e| status(&WoundError::from(e)))?;
                store::assessments::photo(&mut conn, &image.image_id)
                    .await
                    .map_err(|e| status(&e))?
                    .and_then(|(_, assessment)| assessment)
            }
            None => None,
        };
        Ok(pb::UploadPhotoResponse {
            result: Some(result),
            assessment_id: attached_to.unwrap_or_default(),
        })
    }

    /// `GetPhotoUploadStatus`, for the nurse who started the upload.
    pub async fn upload_status(
        &self,
        core: &WoundMonitor,
        caller: &Caller,
        request: pb::GetPhotoUploadStatusRequest,
    ) -> Result<pb::GetPhotoUploadStatusResponse, Status> {
        let result = async {
            let identity = person(caller)?;
            let wound_id = convert::id("wound_id", &request.wound_id)?;
            let mut conn = self.db.pool().acquire().await?;
            core.wound_for(&mut conn, identity, &wound_id, Access::Read)
                .await?;
            Ok::<_, WoundError>(wound_id)
        }
        .await;
        let wound_id = match result {
            Ok(id) => id,
            Err(error) => {
                core.audit(
                    caller,
                    "GetPhotoUploadStatus",
                    "wound",
                    &request.wound_id,
                    outcome_of(&error),
                )
                .await;
                return Err(status(&error));
            }
        };
        let identity = person(caller).map_err(|e| status(&e))?;
        let found = self
            .images
            .upload_status(identity, &target(&wound_id), &request.upload_session_id)
            .await;
        let outcome = if found.is_ok() {
            Outcome::Ok
        } else {
            Outcome::NotFound
        };
        core.audit(caller, "GetPhotoUploadStatus", "wound", &wound_id, outcome)
            .await;
        let status = found.map_err(|e| to_status(&e))?;
        Ok(pb::GetPhotoUploadStatusResponse {
            status: Some(status),
        })
    }

    /// The stored image `image_id` of a wound the caller may see (audited as `action`).
    async fn visible_image(
        &self,
        core: &WoundMonitor,
        caller: &Caller,
        action: &str,
        (wound_id, image_id): (&str, &str),
    ) -> Result<(Identity, telehealth_kit::images::StoredImage), Status> {
        let result = async {
            let identity = person(caller)?.clone();
            let wound_id = convert::id("wound_id", wound_id)?;
            let image_id = convert::id("image_id", image_id)?;
            let mut conn = self.db.pool().acquire().await?;
            core.wound_for(&mut conn, &identity, &wound_id, Access::Read)
                .await?;
            drop(conn);
            let image = self
                .images
                .image(&target(&wound_id), &image_id)
                .await
                .map_err(|e| match e.code() {
                    telehealth_kit::ErrorCode::NotFound => WoundError::NotFound("photo"),
                    _ => WoundError::Unavailable(e.to_string()),
                })?;
            Ok((identity, image))
        }
        .await;
        let outcome = result.as_ref().map_or_else(outcome_of, |_| Outcome::Ok);
        core.audit(caller, action, "image", image_id, outcome).await;
        result.map_err(|e| status(&e))
    }

    /// `DownloadPhoto`: the image info, then chunks from `offset` (audited).
    pub async fn download(
        &self,
        core: &WoundMonitor,
        caller: &Caller,
        request: pb::DownloadPhotoRequest,
    ) -> Result<DownloadStream, Status> {
        let (_, image) = self
            .visible_image(
                core,
                caller,
                "DownloadPhoto",
                (&request.wound_id, &request.image_id),
            )
            .await?;
        let chunks = self
            .images
            .download(&image, request.offset)
            .await
            .map_err(|e| to_status(&e))?;
        let info = pb::DownloadPhotoResponse {
            part: Some(pb::download_photo_response::Part::Image(image.info.clone())),
        };
        let chunks = chunks.map(|chunk| {
            chunk
                .map(|c| pb::DownloadPhotoResponse {
                    part: Some(pb::download_photo_response::Part::Chunk(c)),
                })
                .map_err(|e| to_status(&e))
        });
        Ok(Box::pin(
            futures::stream::once(async move { Ok(info) }).chain(chunks),
        ))
    }

    /// `GetPhotoThumbnail` (audited).
    pub async fn thumbnail(
        &self,
        core: &WoundMonitor,
        caller: &Caller,
        request: pb::GetPhotoThumbnailRequest,
    ) -> Result<pb::GetPhotoThumbnailResponse, Status> {
        let edge = match request.max_edge_px {
            0 => DEFAULT_THUMBNAIL_EDGE,
            edge @ 32..=512 => edge,
            _ => {
                return Err(status(&WoundError::invalid(
                    "max_edge_px",
                    "must be 32 to 512 pixels (0 for 256)",
                )));
            }
        };
        let (_, image) = self
            .visible_image(
                core,
                caller,
                "GetPhotoThumbnail",
                (&request.wound_id, &request.image_id),
            )
            .await?;
        let thumbnail = self
            .images
            .thumbnail(&image, edge.unsigned_abs())
            .await
            .map_err(|e| to_status(&e))?;
        Ok(pb::GetPhotoThumbnailResponse {
            thumbnail: Some(thumbnail),
        })
    }
}

/// An upload for a wound: attached to an assessment or pending.
struct WoundUpload {
    wound_id: String,
    assessment_id: Option<String>,
    uploader: String,
    /// Who uploads, for the audit record staged with the photo.
    caller: Caller,
    pending_until: Timestamp,
}

impl WoundUpload {
    /// Inside the completion transaction: the wound is still open, the assessment still of it
    /// and below the photo limit; then the photo is recorded, attached from the assessment's
    /// current version on (no new version), or pending.
    async fn admit_photo(
        &self,
        conn: &mut AnyConnection,
        image: &pb::ImageInfo,
    ) -> Result<(), WoundError> {
        store::wounds::lock_wound(conn, &self.wound_id).await?;
        let wound = store::wounds::wound(conn, &self.wound_id)
            .await?
            .ok_or(WoundError::NotFound("wound"))?;
        if wound.status == WoundStatus::Closed {
            return Err(WoundError::FailedPrecondition(
                "the wound was closed during the upload; reopen it to add photos".into(),
            ));
        }
        if !wound.in_care_team(&self.uploader) {
            return Err(WoundError::PermissionDenied(
                "the uploader left the wound's care team during the upload",
            ));
        }
        let now = Timestamp::now();
        let attach = match &self.assessment_id {
            None => None,
            Some(id) => {
                let current = store::assessments::version(conn, id, None)
                    .await?
                    .filter(|v| v.wound_id == self.wound_id)
                    .ok_or(WoundError::NotFound("assessment"))?;
                check_photo_room(conn, id).await?;
                Some((id.as_str(), current.version))
            }
        };
        let pending_until = attach.is_none().then_some(self.pending_until);
        store::assessments::insert_photo(
            conn,
            &image.image_id,
            &self.wound_id,
            attach,
            &self.uploader,
            now,
            pending_until,
        )
        .await?;
        // Audited with the photo itself: the record commits with it.
        let entry = AuditEntry::new(
            &self.caller,
            "UploadPhoto",
            "image",
            &image.image_id,
            Outcome::Ok,
        );
        telehealth_kit::audit::stage(conn, &entry).await?;
        Ok(())
    }
}

/// An assessment takes at most [`MAX_PHOTOS`] photos.
async fn check_photo_room(conn: &mut AnyConnection, assessment_id: &str) -> Result<(), WoundError> {
    let count = store::assessments::photos_of(conn, assessment_id)
        .await?
        .len();
    if count >= MAX_PHOTOS {
        return Err(WoundError::invalid(
            "assessment_id",
            format!("an assessment holds at most {MAX_PHOTOS} photos (it has {count})"),
        ));
    }
    Ok(())
}

impl UploadTarget for WoundUpload {
    fn target(&self) -> TargetRef {
        target(&self.wound_id)
    }

    /// A photo for an assessment that already holds its photos is refused before any byte is
    /// sent (a pending photo, attached later by a correction, is checked then).
    fn check_room<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> BoxFuture<'a, Result<(), ImageError>> {
        Box::pin(async move {
            if let Some(id) = &self.assessment_id {
                check_photo_room(conn, id)
                    .await
                    .map_err(|error| ImageError::Target {
                        code: error.code(),
                        message: error.to_string(),
                    })?;
            }
            Ok(())
        })
    }

    fn admit<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        image: &'a pb::ImageInfo,
    ) -> BoxFuture<'a, Result<(), ImageError>> {
        Box::pin(async move {
            self.admit_photo(conn, image)
                .await
                .map_err(|error| ImageError::Target {
                    code: error.code(),
                    message: error.to_string(),
                })
        })
    }
}
