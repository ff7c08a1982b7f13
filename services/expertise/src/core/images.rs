//! Images of a request, through the kit's image pipeline: who may attach, list, detach, download
//! and see thumbnails, and what an attachment does to the request (event, limit, status).

use std::sync::Mutex;

use futures::{Stream, StreamExt, future::BoxFuture};
use sqlx::AnyConnection;
use telehealth_images::ImageId;
use telehealth_images::{
    ImageError, ImageStore, PartOutcome, StoredImage, TargetRef, UploadTarget, single_part,
};
use telehealth_kit::{
    ErrorCode,
    audit::{AuditEntry, Outcome},
    events::{EventBus, StagedEvent},
    identity::Caller,
};
use telehealth_proto::v1 as pb;
use tonic::Status;

use super::{Expertise, person, visible};
use crate::model::RequestId;
use crate::{
    error::ExpertiseError,
    model::{Event, EventKind, Request, Status as RequestStatus},
    store,
};
use telehealth_kit::record::ActorRecord;

/// Most images a request holds.
pub const MAX_IMAGES: usize = 20;

/// Kinds of images a request accepts.
pub const ACCEPTED: [pb::ImageKind; 5] = [
    pb::ImageKind::Dermatoscopy,
    pb::ImageKind::Overview,
    pb::ImageKind::CloseUp,
    pb::ImageKind::WoundPhoto,
    pb::ImageKind::Other,
];

/// The pipeline's name for a request's images.
pub fn target(request_id: &str) -> TargetRef {
    TargetRef {
        kind: "request",
        id: request_id.to_owned(),
    }
}

/// The completed images of a request, in attachment order.
pub async fn attached(
    conn: &mut AnyConnection,
    request_id: &str,
) -> Result<Vec<pb::ImageInfo>, ExpertiseError> {
    Ok(ImageStore::images_of(conn, &target(request_id)).await?)
}

/// What completing an upload checks and does, inside the pipeline's completion transaction.
struct Attachment {
    request_id: String,
    caller: Caller,
    /// Where the notice of the event goes.
    bus: EventBus,
    /// The notice of the event recorded when the request was already submitted, staged in the
    /// completion's transaction and sent after it commits.
    notice: Mutex<Option<StagedEvent>>,
}

fn refused(code: ErrorCode, message: impl Into<String>) -> ImageError {
    ImageError::Target {
        code,
        message: message.into(),
    }
}

/// The refusal of one image too many, naming the field and the bound.
fn too_many_images(count: usize) -> ImageError {
    refused(
        ErrorCode::InvalidArgument,
        format!(
            "images: a request holds at most {MAX_IMAGES} images (it has {count}); detach one first"
        ),
    )
}

impl UploadTarget for Attachment {
    fn target(&self) -> TargetRef {
        target(&self.request_id)
    }

    /// Dermatoscopes that write DICOM: the photograph inside is attached.
    fn accepts_dicom(&self) -> bool {
        true
    }

    /// A request that already holds its images is refused before any byte is sent.
    fn check_room<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> BoxFuture<'a, Result<(), ImageError>> {
        Box::pin(async move {
            let count = ImageStore::images_of(conn, &target(&self.request_id))
                .await?
                .len();
            if count >= MAX_IMAGES {
                return Err(too_many_images(count));
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
            let internal = |e: ExpertiseError| refused(ErrorCode::Internal, e.to_string());
            store::lock_request(conn, &self.request_id)
                .await
                .map_err(internal)?;
            let Some(request) = store::request(conn, &self.request_id)
                .await
                .map_err(internal)?
            else {
                return Err(refused(ErrorCode::NotFound, "request not found"));
            };
            if !matches!(
                request.status,
                RequestStatus::Draft | RequestStatus::Submitted | RequestStatus::Claimed
            ) {
                return Err(refused(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "images can be attached to a draft, submitted or claimed request; this one is {}",
                        request.status.as_str()
                    ),
                ));
            }
            // The new image is already counted.
            let count = ImageStore::images_of(conn, &target(&self.request_id))
                .await?
                .len();
            if count > MAX_IMAGES {
                return Err(too_many_images(count - 1));
            }
            if request.status != RequestStatus::Draft {
                let event = Event {
                    id: uuid::Uuid::new_v4().to_string(),
                    request_id: self.request_id.clone(),
                    kind: EventKind::ImageAttached,
                    occurred_at: jiff::Timestamp::now(),
                    actor: ActorRecord::of(&self.caller),
                    message_id: None,
                };
                store::insert_event(conn, &event).await.map_err(internal)?;
                let notice = crate::core::stage_notice(&self.bus, conn, &request, &event)
                    .await
                    .map_err(|e| refused(ErrorCode::Internal, e.to_string()))?;
                if let Ok(mut staged) = self.notice.lock() {
                    *staged = Some(notice);
                }
            }
            // Audited with the attachment itself: both records commit with it.
            for (kind, id) in [
                ("expertise_request", self.request_id.as_str()),
                ("image", image.image_id.as_str()),
            ] {
                let entry = AuditEntry::new(&self.caller, "AttachImage", kind, id, Outcome::Ok);
                telehealth_kit::audit::stage(conn, &entry)
                    .await
                    .map_err(|e| refused(ErrorCode::Internal, e.to_string()))?;
            }
            tracing::info!(request_id = %self.request_id, image_id = %image.image_id, "image attached");
            Ok(())
        })
    }
}

impl Expertise {
    /// Checks that `caller` (the requester) may attach an image to request `id` now.
    async fn attachable(&self, caller: &Caller, id: &str) -> Result<Request, ExpertiseError> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        let request = visible(caller, store::request(&mut conn, id).await?)?;
        if identity.subject != request.requester.subject {
            return Err(ExpertiseError::PermissionDenied(
                "only the doctor who created the request attaches images",
            ));
        }
        if !matches!(
            request.status,
            RequestStatus::Draft | RequestStatus::Submitted | RequestStatus::Claimed
        ) {
            return Err(ExpertiseError::FailedPrecondition(format!(
                "images can be attached to a draft, submitted or claimed request; this one is {}",
                request.status.as_str()
            )));
        }
        Ok(request)
    }

    /// Takes an upload for request `id` (header already read; `chunks` are the rest).
    pub async fn attach_image<S>(
        &self,
        caller: &Caller,
        id: &RequestId,
        header: pb::ImageUploadHeader,
        chunks: S,
    ) -> Result<pb::ImageUploadResult, ExpertiseError>
    where
        S: Stream<Item = Result<pb::ImageChunk, Status>> + Unpin + Send + 'static,
    {
        let result = async {
            self.attachable(caller, id).await?;
            let identity = person(caller)?;
            let attachment = Attachment {
                request_id: id.to_string(),
                caller: caller.clone(),
                bus: self.bus.clone(),
                notice: Mutex::new(None),
            };
            let result = self
                .images
                .upload(identity, &attachment, header, &ACCEPTED, chunks)
                .await?;
            let notice = attachment.notice.lock().ok().and_then(|mut n| n.take());
            Ok::<_, ExpertiseError>((result, notice))
        }
        .await;
        match &result {
            // A new attachment staged its records in its own transaction.
            Ok((upload, _)) if !upload.already_completed => self.flush_audit().await,
            // A repeated upload returns the stored image: a read of it.
            Ok((upload, _)) => {
                self.audit(caller, "AttachImage", id, Outcome::Ok).await;
                if let Some(image) = &upload.image {
                    self.audit_record(caller, "AttachImage", "image", &image.image_id, Outcome::Ok)
                        .await;
                }
            }
            // Stored so far and resumable: progress, not a decision to audit.
            Err(ExpertiseError::Image(ImageError::Incomplete { .. })) => {}
            Err(error) => {
                self.audit(caller, "AttachImage", id, Outcome::of(error))
                    .await
            }
        }
        let (result, notice) = result?;
        if let Some(notice) = notice {
            notice.send();
        }
        Ok(result)
    }

    /// One part of an upload sent in its own call (`AttachImagePart`, for browsers): the same
    /// checks and pipeline as [`Self::attach_image`], with `chunk` as the whole stream.
    pub async fn attach_image_part(
        &self,
        caller: &Caller,
        id: &RequestId,
        header: pb::ImageUploadHeader,
        chunk: pb::ImageChunk,
    ) -> Result<PartOutcome, ExpertiseError> {
        let (header, chunks) = single_part(header, chunk);
        match self.attach_image(caller, id, header, chunks).await {
            Ok(done) => Ok(PartOutcome::Done(Box::new(done))),
            Err(ExpertiseError::Image(error)) => Ok(PartOutcome::of(Err(error))?),
            Err(error) => Err(error),
        }
    }

    /// A wound photo attached by wound monitoring on behalf of the request's requester: the
    /// same checks and pipeline as [`Self::attach_image`], as that person.
    pub async fn attach_wound_photo<S>(
        &self,
        caller: &Caller,
        requester: &pb::Actor,
        id: &RequestId,
        header: pb::ImageUploadHeader,
        chunks: S,
    ) -> Result<pb::ImageUploadResult, ExpertiseError>
    where
        S: Stream<Item = Result<pb::ImageChunk, Status>> + Unpin + Send + 'static,
    {
        let person = super::on_behalf_of_wound_requester(caller, requester)?;
        self.attach_image(&person, id, header, chunks).await
    }

    /// Where an upload session of the caller stands.
    pub async fn upload_status(
        &self,
        caller: &Caller,
        id: &RequestId,
        session_id: &str,
    ) -> Result<pb::ImageUploadStatus, ExpertiseError> {
        let result = async {
            let identity = person(caller)?;
            let mut conn = self.base.db().pool().acquire().await?;
            visible(caller, store::request(&mut conn, id).await?)?;
            drop(conn);
            Ok(self
                .images
                .upload_status(identity, &target(id), session_id)
                .await?)
        }
        .await;
        let outcome = result
            .as_ref()
            .map_or_else(|e: &ExpertiseError| Outcome::of(e), |_| Outcome::Ok);
        self.audit(caller, "GetImageUploadStatus", id, outcome)
            .await;
        result
    }

    /// Removes an image from a draft (its bytes are deleted by the pipeline's sweeper).
    pub async fn detach_image(
        &self,
        caller: &Caller,
        id: &RequestId,
        image_id: &ImageId,
    ) -> Result<Request, ExpertiseError> {
        let result = async {
            let identity = person(caller)?;
            let mut tx = self.base.db().pool().begin().await?;
            store::lock_request(&mut tx, id).await?;
            let current = visible(caller, store::request(&mut tx, id).await?)?;
            if identity.subject != current.requester.subject {
                return Err(ExpertiseError::PermissionDenied(
                    "only the doctor who created the request detaches images",
                ));
            }
            if current.status != RequestStatus::Draft {
                return Err(ExpertiseError::FailedPrecondition(format!(
                    "images can be removed from a draft only; this request is {}",
                    current.status.as_str()
                )));
            }
            if !ImageStore::detach(&mut tx, &target(id), image_id).await? {
                return Err(ExpertiseError::NotFound("image"));
            }
            let mut updated = current.clone();
            updated.version += 1;
            updated.updated_at = self.now();
            store::save_request(&mut tx, &updated, current.version).await?;
            let entry = AuditEntry::new(
                caller,
                "DetachImage",
                "image",
                image_id.as_str(),
                Outcome::Ok,
            );
            // The record commits with the change, then joins the chain before the caller hears of it.
            telehealth_kit::audit::stage(&mut tx, &entry).await?;
            tx.commit().await?;
            self.flush_audit().await;
            Ok(updated)
        }
        .await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit(caller, "DetachImage", id, outcome).await;
        result
    }

    /// An image of a request the caller may see.
    async fn visible_image(
        &self,
        caller: &Caller,
        id: &str,
        image_id: &str,
        action: &str,
    ) -> Result<StoredImage, ExpertiseError> {
        let result = async {
            let mut conn = self.base.db().pool().acquire().await?;
            visible(caller, store::request(&mut conn, id).await?)?;
            drop(conn);
            self.images
                .image(&target(id), image_id)
                .await
                .map_err(|e| match e {
                    ImageError::ImageNotFound => ExpertiseError::NotFound("image"),
                    other => other.into(),
                })
        }
        .await;
        let outcome = result.as_ref().map_or_else(Outcome::of, |_| Outcome::Ok);
        self.audit_record(caller, action, "image", image_id, outcome)
            .await;
        result
    }

    /// The image's info and its bytes from `offset`, in chunks (audited as a read).
    pub async fn download_image(
        &self,
        caller: &Caller,
        id: &RequestId,
        image_id: &ImageId,
        offset: i64,
    ) -> Result<
        (
            pb::ImageInfo,
            impl Stream<Item = Result<pb::ImageChunk, ExpertiseError>> + Send + use<>,
        ),
        ExpertiseError,
    > {
        let image = self
            .visible_image(caller, id, image_id, "DownloadImage")
            .await?;
        let chunks = self.images.download(&image, offset).await?;
        Ok((image.info, chunks.map(|c| c.map_err(ExpertiseError::from))))
    }

    /// A thumbnail of an image (audited as a read).
    pub async fn image_thumbnail(
        &self,
        caller: &Caller,
        id: &RequestId,
        image_id: &ImageId,
        max_side: u32,
    ) -> Result<pb::Thumbnail, ExpertiseError> {
        let image = self
            .visible_image(caller, id, image_id, "GetImageThumbnail")
            .await?;
        Ok(self.images.thumbnail(&image, max_side).await?)
    }

    /// The completed images of a request (for responses; the request was already checked).
    pub async fn images_of(&self, id: &str) -> Result<Vec<pb::ImageInfo>, ExpertiseError> {
        let mut conn = self.base.db().pool().acquire().await?;
        attached(&mut conn, id).await
    }
}
