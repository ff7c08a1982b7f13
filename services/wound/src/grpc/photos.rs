//! The four photo RPCs (upload, upload status, download, thumbnail) and the photo infos of
//! assessment responses. Every rule is the core's (`core::photos`); this splits the upload stream
//! into header and chunks, converts ids, calls the core and builds the responses.

use std::collections::HashMap;

use futures::StreamExt;
use telehealth_images::PartOutcome;
use telehealth_kit::{
    identity::{Caller, require_caller},
    ids::Id,
    watch::ServerStream,
};
use telehealth_proto::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use super::WoundApi;
use crate::{
    convert,
    error::WoundError,
    model::{AssessmentId, WoundId},
};

/// Longest edge of a thumbnail when the client asks for 0.
const DEFAULT_THUMBNAIL_EDGE: u32 = 256;

impl WoundApi {
    /// Completes the `ImageInfo` of each photo of `assessment` (of wound `wound_id`); a photo
    /// the pipeline no longer knows (or cannot list now) keeps its id only.
    pub(super) async fn describe_photos(&self, wound_id: &str, assessment: &mut pb::Assessment) {
        if assessment.photos.is_empty() {
            return;
        }
        let mut by_id: HashMap<String, pb::ImageInfo> = self
            .core
            .photos_of(wound_id)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|info| (info.image_id.clone(), info))
            .collect();
        for photo in &mut assessment.photos {
            if let Some(info) = by_id.remove(&photo.image_id) {
                *photo = info;
            }
        }
    }

    /// Converts the ids of a photo request; a refusal is audited by the core as `action` on the
    /// record `(kind, id)` as sent.
    async fn photo_ids<const N: usize>(
        &self,
        caller: &Caller,
        action: &str,
        record: (&str, &str),
        ids: [(&'static str, &str); N],
    ) -> Result<[String; N], Status> {
        let mut converted = Vec::with_capacity(N);
        for (field, value) in ids {
            match telehealth_kit::ids::record_id(field, value).map_err(WoundError::from) {
                Ok(id) => converted.push(id),
                Err(error) => {
                    let error = self
                        .core
                        .refuse_photo_request(caller, action, record, error)
                        .await;
                    return Err(Status::from(error));
                }
            }
        }
        Ok(converted
            .try_into()
            .expect("one converted id per field given"))
    }

    /// The wound, assessment and image header of an upload's header; a malformed one is refused
    /// (and audited) for the wound.
    async fn photo_header(
        &self,
        caller: &Caller,
        header: pb::UploadPhotoHeader,
    ) -> Result<(WoundId, Option<AssessmentId>, pb::ImageUploadHeader), Status> {
        let wound_id = convert::id("wound_id", &header.wound_id)?;
        let converted = convert::optional_id("assessment_id", &header.assessment_id).and_then(
            |assessment_id| {
                let image = header
                    .image
                    .ok_or_else(|| WoundError::invalid("image", "the image header is required"))?;
                Ok((assessment_id, image))
            },
        );
        match converted {
            Ok((assessment_id, image)) => Ok((wound_id, assessment_id, image)),
            Err(error) => {
                let error = self
                    .core
                    .refuse_photo_request(caller, "UploadPhoto", ("wound", &wound_id), error)
                    .await;
                Err(Status::from(error))
            }
        }
    }

    /// `UploadPhotoPart`: one chunk of an `UploadPhoto` upload per call (browsers).
    pub(super) async fn upload_part(
        &self,
        request: Request<pb::UploadPhotoPartRequest>,
    ) -> Result<Response<pb::UploadPhotoPartResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let header = r
            .header
            .ok_or_else(|| Status::invalid_argument("header is required"))?;
        let chunk = r
            .chunk
            .ok_or_else(|| Status::invalid_argument("chunk is required"))?;
        let (wound_id, assessment_id, image) = self.photo_header(&caller, header).await?;
        let (outcome, assessment_id) = self
            .core
            .attach_photo_part(&caller, &wound_id, assessment_id, image, chunk)
            .await?;
        Ok(Response::new(match outcome {
            PartOutcome::Acknowledged(offset) => pb::UploadPhotoPartResponse {
                acknowledged_offset: offset,
                ..Default::default()
            },
            PartOutcome::Done(result) => pb::UploadPhotoPartResponse {
                acknowledged_offset: result
                    .image
                    .as_ref()
                    .map_or(0, |image| image.original_size_bytes),
                result: Some(*result),
                assessment_id: assessment_id.unwrap_or_default(),
            },
        }))
    }

    /// `UploadPhoto`: the header first, then chunks; resumable (see images.proto).
    pub(super) async fn upload(
        &self,
        request: Request<Streaming<pb::UploadPhotoRequest>>,
    ) -> Result<Response<pb::UploadPhotoResponse>, Status> {
        let caller = require_caller(&request)?;
        let mut stream = request.into_inner();
        let first = stream.next().await.ok_or_else(|| {
            Status::invalid_argument("the stream is empty: send the header first")
        })??;
        let Some(pb::upload_photo_request::Part::Header(header)) = first.part else {
            return Err(Status::invalid_argument(
                "the first message must be the header",
            ));
        };
        let (wound_id, assessment_id, image) = self.photo_header(&caller, header).await?;
        let chunks = stream.map(|message| match message?.part {
            Some(pb::upload_photo_request::Part::Chunk(chunk)) => Ok(chunk),
            _ => Err(Status::invalid_argument(
                "every message after the header must be a chunk",
            )),
        });
        let uploaded = self
            .core
            .attach_photo(&caller, &wound_id, assessment_id, image, Box::pin(chunks))
            .await?;
        Ok(Response::new(pb::UploadPhotoResponse {
            result: Some(uploaded.result),
            assessment_id: uploaded.assessment_id.unwrap_or_default(),
        }))
    }

    /// `GetPhotoUploadStatus`, for the nurse who started the upload.
    pub(super) async fn upload_status(
        &self,
        request: Request<pb::GetPhotoUploadStatusRequest>,
    ) -> Result<Response<pb::GetPhotoUploadStatusResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let [wound_id] = self
            .photo_ids(
                &caller,
                "GetPhotoUploadStatus",
                ("wound", &r.wound_id),
                [("wound_id", &r.wound_id)],
            )
            .await?;
        let status = self
            .core
            .photo_upload_status(&caller, &Id::known(wound_id), &r.upload_session_id)
            .await?;
        Ok(Response::new(pb::GetPhotoUploadStatusResponse {
            status: Some(status),
        }))
    }

    /// `DownloadPhoto`: the image info, then chunks from `offset`.
    pub(super) async fn download(
        &self,
        request: Request<pb::DownloadPhotoRequest>,
    ) -> Result<Response<ServerStream<pb::DownloadPhotoResponse>>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let [wound_id, image_id] = self
            .photo_ids(
                &caller,
                "DownloadPhoto",
                ("image", &r.image_id),
                [("wound_id", &r.wound_id), ("image_id", &r.image_id)],
            )
            .await?;
        let (info, chunks) = self
            .core
            .download_photo(
                &caller,
                &Id::known(wound_id),
                &Id::known(image_id),
                r.offset,
            )
            .await?;
        let first = pb::DownloadPhotoResponse {
            part: Some(pb::download_photo_response::Part::Image(info)),
        };
        let chunks = chunks.map(|chunk| {
            chunk
                .map(|c| pb::DownloadPhotoResponse {
                    part: Some(pb::download_photo_response::Part::Chunk(c)),
                })
                .map_err(Status::from)
        });
        let stream = futures::stream::once(async move { Ok(first) }).chain(chunks);
        Ok(Response::new(Box::pin(stream)))
    }

    /// `GetPhotoThumbnail`.
    pub(super) async fn thumbnail(
        &self,
        request: Request<pb::GetPhotoThumbnailRequest>,
    ) -> Result<Response<pb::GetPhotoThumbnailResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let edge = match r.max_edge_px {
            0 => DEFAULT_THUMBNAIL_EDGE,
            edge @ 32..=512 => edge.unsigned_abs(),
            _ => {
                return Err(Status::from(WoundError::invalid(
                    "max_edge_px",
                    "must be 32 to 512 pixels (0 for 256)",
                )));
            }
        };
        let [wound_id, image_id] = self
            .photo_ids(
                &caller,
                "GetPhotoThumbnail",
                ("image", &r.image_id),
                [("wound_id", &r.wound_id), ("image_id", &r.image_id)],
            )
            .await?;
        let thumbnail = self
            .core
            .photo_thumbnail(&caller, &Id::known(wound_id), &Id::known(image_id), edge)
            .await?;
        Ok(Response::new(pb::GetPhotoThumbnailResponse {
            thumbnail: Some(thumbnail),
        }))
    }
}
