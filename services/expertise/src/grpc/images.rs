//! The image RPCs of a request (attach, upload status, detach, download, thumbnail), over the
//! kit's shared image pipeline (streaming upload to the blob store, content sniffing, metadata
//! stripping without re-encoding, resumable sessions).

use futures::StreamExt;
use telehealth_kit::{identity::require_caller, watch::ServerStream};
use telehealth_proto::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use super::ExpertiseApi;
use crate::{convert, error::status};

/// Longest edge of a thumbnail when the client asks for 0.
const DEFAULT_THUMBNAIL_EDGE: u32 = 256;

impl ExpertiseApi {
    /// The completed images attached to a request, in attachment order.
    pub(super) async fn images_of(&self, request_id: &str) -> Vec<pb::ImageInfo> {
        match self.core.images_of(request_id).await {
            Ok(images) => images,
            Err(error) => {
                tracing::warn!(%error, %request_id, "images of a request not listed");
                Vec::new()
            }
        }
    }

    pub(super) async fn attach(
        &self,
        request: Request<Streaming<pb::AttachImageRequest>>,
    ) -> Result<Response<pb::AttachImageResponse>, Status> {
        let caller = require_caller(&request)?;
        let mut stream = request.into_inner();
        let first = stream.next().await.ok_or_else(|| {
            Status::invalid_argument("the stream is empty: send the header first")
        })??;
        let Some(pb::attach_image_request::Part::Header(header)) = first.part else {
            return Err(Status::invalid_argument(
                "the first message must be the header (request id and image header)",
            ));
        };
        let id = convert::id("request_id", &header.request_id).map_err(|e| status(&e))?;
        let image = header
            .image
            .ok_or_else(|| Status::invalid_argument("header.image is required"))?;
        let chunks = stream.map(|message| match message?.part {
            Some(pb::attach_image_request::Part::Chunk(chunk)) => Ok(chunk),
            _ => Err(Status::invalid_argument(
                "every message after the header must be a chunk",
            )),
        });
        let result = self
            .core
            .attach_image(&caller, &id, image, Box::pin(chunks))
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::AttachImageResponse {
            result: Some(result),
        }))
    }

    /// `AttachWoundPhoto`: the same stream as `AttachImage`, whose header names the requester
    /// on whose behalf wound monitoring attaches the photo.
    pub(super) async fn attach_wound_photo(
        &self,
        request: Request<Streaming<pb::AttachWoundPhotoRequest>>,
    ) -> Result<Response<pb::AttachImageResponse>, Status> {
        let caller = require_caller(&request)?;
        let mut stream = request.into_inner();
        let first = stream.next().await.ok_or_else(|| {
            Status::invalid_argument("the stream is empty: send the header first")
        })??;
        let Some(pb::attach_wound_photo_request::Part::Header(header)) = first.part else {
            return Err(Status::invalid_argument(
                "the first message must be the header (requester, request id and image header)",
            ));
        };
        let requester = header
            .requester
            .ok_or_else(|| Status::invalid_argument("header.requester is required"))?;
        let attach = header
            .attach
            .ok_or_else(|| Status::invalid_argument("header.attach is required"))?;
        let id = convert::id("request_id", &attach.request_id).map_err(|e| status(&e))?;
        let image = attach
            .image
            .ok_or_else(|| Status::invalid_argument("header.attach.image is required"))?;
        let chunks = stream.map(|message| match message?.part {
            Some(pb::attach_wound_photo_request::Part::Chunk(chunk)) => Ok(chunk),
            _ => Err(Status::invalid_argument(
                "every message after the header must be a chunk",
            )),
        });
        let result = self
            .core
            .attach_wound_photo(&caller, &requester, &id, image, Box::pin(chunks))
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::AttachImageResponse {
            result: Some(result),
        }))
    }

    pub(super) async fn upload_status(
        &self,
        request: Request<pb::GetImageUploadStatusRequest>,
    ) -> Result<Response<pb::GetImageUploadStatusResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let id = convert::id("request_id", &r.request_id).map_err(|e| status(&e))?;
        let found = self
            .core
            .upload_status(&caller, &id, &r.upload_session_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetImageUploadStatusResponse {
            status: Some(found),
        }))
    }

    pub(super) async fn detach(
        &self,
        request: Request<pb::DetachImageRequest>,
    ) -> Result<Response<pb::DetachImageResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let id = convert::id("request_id", &r.request_id).map_err(|e| status(&e))?;
        let image_id = convert::id("image_id", &r.image_id).map_err(|e| status(&e))?;
        let updated = self
            .core
            .detach_image(&caller, &id, &image_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::DetachImageResponse {
            request: Some(self.pb_request(&updated).await),
        }))
    }

    pub(super) async fn download(
        &self,
        request: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<ServerStream<pb::DownloadImageResponse>>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let id = convert::id("request_id", &r.request_id).map_err(|e| status(&e))?;
        let image_id = convert::id("image_id", &r.image_id).map_err(|e| status(&e))?;
        let (info, chunks) = self
            .core
            .download_image(&caller, &id, &image_id, r.offset)
            .await
            .map_err(|e| status(&e))?;
        let first = pb::DownloadImageResponse {
            part: Some(pb::download_image_response::Part::Image(info)),
        };
        let chunks = chunks.map(|chunk| {
            chunk
                .map(|c| pb::DownloadImageResponse {
                    part: Some(pb::download_image_response::Part::Chunk(c)),
                })
                .map_err(|e| status(&e))
        });
        let stream = futures::stream::once(async move { Ok(first) }).chain(chunks);
        Ok(Response::new(Box::pin(stream)))
    }

    pub(super) async fn thumbnail(
        &self,
        request: Request<pb::GetImageThumbnailRequest>,
    ) -> Result<Response<pb::GetImageThumbnailResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let id = convert::id("request_id", &r.request_id).map_err(|e| status(&e))?;
        let image_id = convert::id("image_id", &r.image_id).map_err(|e| status(&e))?;
        let edge = match r.max_edge_px {
            0 => DEFAULT_THUMBNAIL_EDGE,
            n @ 32..=512 => n.unsigned_abs(),
            _ => {
                return Err(Status::invalid_argument(
                    "max_edge_px: must be 32 to 512 (0 means 256)",
                ));
            }
        };
        let thumbnail = self
            .core
            .image_thumbnail(&caller, &id, &image_id, edge)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetImageThumbnailResponse {
            thumbnail: Some(thumbnail),
        }))
    }
}
