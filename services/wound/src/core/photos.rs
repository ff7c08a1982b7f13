//! Photos of a wound, through the kit's image pipeline: who may upload, where a photo goes
//! (attached to an assessment or pending), upload status, downloads, thumbnails, and their audit.
//!
//! The pipeline keeps the bytes and the `ImageInfo` (target `("wound", wound id)`); this service
//! keeps which assessment each photo belongs to (`wound_photos`), decided inside the pipeline's
//! completion transaction by [`WoundUpload`]'s `admit`, so a photo is attached (or pending)
//! exactly when it becomes visible.

use futures::{Stream, StreamExt, future::BoxFuture};
use jiff::Timestamp;
use sqlx::AnyConnection;
use telehealth_images::ImageId;
use telehealth_images::{
    ImageError, ImageStore, PartOutcome, StoredImage, TargetRef, UploadTarget, single_part,
};
use telehealth_kit::{
    ApiError, ErrorCode,
    audit::{AuditEntry, Outcome},
    identity::Caller,
};
use telehealth_proto::v1 as pb;
use tonic::Status;

use super::{WoundMonitor, person};
use crate::model::{AssessmentId, WoundId};
use crate::{
    domain::MAX_PHOTOS,
    error::WoundError,
    model::{Access, WoundStatus},
    store,
};

/// What a wound photo may be.
pub const ACCEPTED: [pb::ImageKind; 2] = [pb::ImageKind::WoundPhoto, pb::ImageKind::Overview];

/// The pipeline's name for a wound's photos.
pub fn target(wound_id: &str) -> TargetRef {
    TargetRef {
        kind: "wound",
        id: wound_id.to_owned(),
    }
}

/// What an upload produced, and the assessment the photo is attached to now (none: pending, or
/// the upload is not complete).
#[derive(Debug, Clone)]
pub struct UploadedPhoto {
    pub result: pb::ImageUploadResult,
    pub assessment_id: Option<String>,
}

/// The audit outcome of a refused upload, from its code (pipeline refusals included).
fn upload_outcome(error: &WoundError) -> Outcome {
    match error.code() {
        ErrorCode::NotFound => Outcome::NotFound,
        ErrorCode::PermissionDenied => Outcome::Denied,
        ErrorCode::InvalidArgument | ErrorCode::FailedPrecondition => Outcome::Invalid,
        _ => Outcome::Failed,
    }
}

impl WoundMonitor {
    /// A photo request the adapter could not convert (`error`), refused and audited as `action`
    /// on record `kind`/`id` as the core would have: a call without a person's identity is
    /// refused as such first.
    pub async fn refuse_photo_request(
        &self,
        caller: &Caller,
        action: &str,
        (kind, id): (&str, &str),
        error: WoundError,
    ) -> WoundError {
        let error = person(caller).err().unwrap_or(error);
        self.audit(caller, action, kind, id, Outcome::of(&error))
            .await;
        error
    }

    /// Takes a photo upload for wound `wound_id` (header already read; `chunks` are the rest),
    /// for `assessment_id` or pending; resumable (see images.proto). A new photo is audited
    /// with its own transaction, a repeated or refused upload afterwards.
    /// One part of an upload sent in its own call (`UploadPhotoPart`, for browsers): the same
    /// checks and pipeline as [`Self::attach_photo`], with `chunk` as the whole stream.
    pub async fn attach_photo_part(
        &self,
        caller: &Caller,
        wound_id: &WoundId,
        assessment_id: Option<AssessmentId>,
        header: pb::ImageUploadHeader,
        chunk: pb::ImageChunk,
    ) -> Result<(PartOutcome, Option<String>), WoundError> {
        let (header, chunks) = single_part(header, chunk);
        match self
            .attach_photo(caller, wound_id, assessment_id, header, chunks)
            .await
        {
            Ok(done) => Ok((PartOutcome::Done(Box::new(done.result)), done.assessment_id)),
            Err(WoundError::Image(error)) => Ok((PartOutcome::of(Err(error))?, None)),
            Err(error) => Err(error),
        }
    }

    pub async fn attach_photo<S>(
        &self,
        caller: &Caller,
        wound_id: &WoundId,
        assessment_id: Option<AssessmentId>,
        header: pb::ImageUploadHeader,
        chunks: S,
    ) -> Result<UploadedPhoto, WoundError>
    where
        S: Stream<Item = Result<pb::ImageChunk, Status>> + Unpin + Send + 'static,
    {
        let result = self
            .upload_photo(
                caller,
                wound_id,
                assessment_id.map(|id| id.to_string()),
                header,
                chunks,
            )
            .await;
        match &result {
            // A new photo staged its record in its own transaction.
            Ok(upload) if !upload.result.already_completed => self.flush_audit().await,
            // A repeated upload returns the stored photo: a read of it.
            Ok(upload) => {
                let (kind, id) = upload
                    .result
                    .image
                    .as_ref()
                    .map_or(("wound", wound_id.as_str()), |image| {
                        ("image", image.image_id.as_str())
                    });
                self.audit(caller, "UploadPhoto", kind, id, Outcome::Ok)
                    .await;
            }
            // Stored so far and resumable: progress, not a decision to audit.
            Err(WoundError::Image(ImageError::Incomplete { .. })) => {}
            Err(error) => {
                self.audit(
                    caller,
                    "UploadPhoto",
                    "wound",
                    wound_id,
                    upload_outcome(error),
                )
                .await;
            }
        }
        result
    }

    async fn upload_photo<S>(
        &self,
        caller: &Caller,
        wound_id: &str,
        assessment_id: Option<String>,
        header: pb::ImageUploadHeader,
        chunks: S,
    ) -> Result<UploadedPhoto, WoundError>
    where
        S: Stream<Item = Result<pb::ImageChunk, Status>> + Unpin + Send + 'static,
    {
        let identity = person(caller)?;
        {
            let mut conn = self.base.db().pool().acquire().await?;
            let wound = self.wound_for_nurse(&mut conn, identity, wound_id).await?;
            if wound.status == WoundStatus::Closed {
                return Err(WoundError::FailedPrecondition(
                    "the wound is closed; reopen it to add photos".into(),
                ));
            }
            if let Some(id) = &assessment_id {
                let known = store::assessments::version(&mut conn, id, None)
                    .await?
                    .is_some_and(|v| v.wound_id == wound_id);
                if !known {
                    return Err(WoundError::NotFound("assessment"));
                }
            }
        }
        let upload = WoundUpload {
            wound_id: wound_id.to_owned(),
            assessment_id,
            uploader: identity.subject.clone(),
            caller: caller.clone(),
            pending_until: self.now() + self.rules().pending_photo_lifetime,
        };
        let result = self
            .images
            .upload(identity, &upload, header, &ACCEPTED, chunks)
            .await?;
        // On a repeated completed session, say where the photo is now.
        let assessment_id = match result.image.as_ref() {
            Some(image) => {
                let mut conn = self.base.db().pool().acquire().await?;
                store::assessments::photo(&mut conn, &image.image_id)
                    .await?
                    .and_then(|(_, assessment)| assessment)
            }
            None => None,
        };
        Ok(UploadedPhoto {
            result,
            assessment_id,
        })
    }

    /// Where an upload session of the caller for wound `wound_id` stands (audited).
    pub async fn photo_upload_status(
        &self,
        caller: &Caller,
        wound_id: &WoundId,
        session_id: &str,
    ) -> Result<pb::ImageUploadStatus, WoundError> {
        let checked = async {
            let identity = person(caller)?;
            let mut conn = self.base.db().pool().acquire().await?;
            self.wound_for(&mut conn, identity, wound_id, Access::Read)
                .await?;
            Ok::<_, WoundError>(identity)
        }
        .await;
        let identity = match checked {
            Ok(identity) => identity,
            Err(error) => {
                self.audit(
                    caller,
                    "GetPhotoUploadStatus",
                    "wound",
                    wound_id,
                    Outcome::of(&error),
                )
                .await;
                return Err(error);
            }
        };
        let found = self
            .images
            .upload_status(identity, &target(wound_id), session_id)
            .await;
        // Any session the pipeline does not show this caller is an unknown one.
        let outcome = if found.is_ok() {
            Outcome::Ok
        } else {
            Outcome::NotFound
        };
        self.audit(caller, "GetPhotoUploadStatus", "wound", wound_id, outcome)
            .await;
        Ok(found?)
    }

    /// The stored photo `image_id` of a wound the caller may see (audited as `action`).
    async fn visible_photo(
        &self,
        caller: &Caller,
        action: &str,
        wound_id: &str,
        image_id: &str,
    ) -> Result<StoredImage, WoundError> {
        let result = async {
            let identity = person(caller)?;
            let mut conn = self.base.db().pool().acquire().await?;
            self.wound_for(&mut conn, identity, wound_id, Access::Read)
                .await?;
            drop(conn);
            self.images
                .image(&target(wound_id), image_id)
                .await
                .map_err(|e| match e.code() {
                    ErrorCode::NotFound => WoundError::NotFound("photo"),
                    _ => WoundError::Unavailable(e.to_string()),
                })
        }
        .await;
        self.audit_result(caller, action, "image", image_id, &result)
            .await;
        result
    }

    /// The photo's info and its bytes from `offset`, in chunks (audited as a read).
    pub async fn download_photo(
        &self,
        caller: &Caller,
        wound_id: &WoundId,
        image_id: &ImageId,
        offset: i64,
    ) -> Result<
        (
            pb::ImageInfo,
            impl Stream<Item = Result<pb::ImageChunk, WoundError>> + Send + use<>,
        ),
        WoundError,
    > {
        let image = self
            .visible_photo(caller, "DownloadPhoto", wound_id, image_id)
            .await?;
        let chunks = self.images.download(&image, offset).await?;
        Ok((image.info, chunks.map(|c| c.map_err(WoundError::from))))
    }

    /// A thumbnail of a photo, its longest edge `max_edge` pixels (audited as a read).
    pub async fn photo_thumbnail(
        &self,
        caller: &Caller,
        wound_id: &WoundId,
        image_id: &ImageId,
        max_edge: u32,
    ) -> Result<pb::Thumbnail, WoundError> {
        let image = self
            .visible_photo(caller, "GetPhotoThumbnail", wound_id, image_id)
            .await?;
        Ok(self.images.thumbnail(&image, max_edge).await?)
    }

    /// The completed photos of wound `wound_id` (for responses; the wound was already checked).
    pub async fn photos_of(&self, wound_id: &str) -> Result<Vec<pb::ImageInfo>, WoundError> {
        let mut conn = self.base.db().pool().acquire().await?;
        Ok(ImageStore::images_of(&mut conn, &target(wound_id)).await?)
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
            None => {
                check_pending_room(conn, &self.wound_id, now).await?;
                None
            }
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

/// A wound has at most [`MAX_PHOTOS`] photos waiting for an assessment: more could never all be
/// attached to one, and each costs storage until it expires.
async fn check_pending_room(
    conn: &mut AnyConnection,
    wound_id: &str,
    now: Timestamp,
) -> Result<(), WoundError> {
    let pending = store::assessments::pending_photo_count(conn, wound_id, now).await?;
    if pending >= MAX_PHOTOS as i64 {
        return Err(WoundError::FailedPrecondition(format!(
            "{pending} photos of this wound already wait for an assessment (at most {MAX_PHOTOS}): \
             record the assessment with them, or let them expire, before uploading more"
        )));
    }
    Ok(())
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

/// A wound refusal as the pipeline carries it back (code and message kept).
fn refused(error: &WoundError) -> ImageError {
    ImageError::Target {
        code: error.code(),
        message: error.to_string(),
    }
}

impl UploadTarget for WoundUpload {
    fn target(&self) -> TargetRef {
        target(&self.wound_id)
    }

    /// A photo for an assessment that already holds its photos, or one more pending photo of a
    /// wound that has its fill of them, is refused before any byte is sent.
    fn check_room<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
    ) -> BoxFuture<'a, Result<(), ImageError>> {
        Box::pin(async move {
            match &self.assessment_id {
                Some(id) => check_photo_room(conn, id).await,
                None => check_pending_room(conn, &self.wound_id, Timestamp::now()).await,
            }
            .map_err(|error| refused(&error))
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
                .map_err(|error| refused(&error))
        })
    }
}
