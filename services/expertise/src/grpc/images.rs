//! The image RPCs of a request (attach, upload status, detach, download, thumbnail), over the
//! kit's shared image pipeline (streaming upload to the blob store, content sniffing, metadata
//! stripping without re-encoding, resumable sessions).

use futures::{StreamExt, stream::BoxStream};
use telehealth_images::PartOutcome;
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
        let (header, chunks) = header_then_chunks(
            request.into_inner(),
            |message: pb::AttachImageRequest| {
                message.part.map(|part| match part {
                    pb::attach_image_request::Part::Header(header) => UploadPart::Header(header),
                    pb::attach_image_request::Part::Chunk(chunk) => UploadPart::Chunk(chunk),
                })
            },
            "request id and image header",
        )
        .await?;
        let id = convert::id("request_id", &header.request_id).map_err(|e| status(&e))?;
        let image = header
            .image
            .ok_or_else(|| Status::invalid_argument("header.image is required"))?;
        let result = self
            .core
            .attach_image(&caller, &id, image, chunks)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::AttachImageResponse {
            result: Some(result),
        }))
    }

    /// `AttachImagePart`: one chunk of an `AttachImage` upload per call (browsers).
    pub(super) async fn attach_part(
        &self,
        request: Request<pb::AttachImagePartRequest>,
    ) -> Result<Response<pb::AttachImagePartResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let header = r
            .header
            .ok_or_else(|| Status::invalid_argument("header is required"))?;
        let chunk = r
            .chunk
            .ok_or_else(|| Status::invalid_argument("chunk is required"))?;
        let id = convert::id("request_id", &header.request_id).map_err(|e| status(&e))?;
        let image = header
            .image
            .ok_or_else(|| Status::invalid_argument("header.image is required"))?;
        let outcome = self
            .core
            .attach_image_part(&caller, &id, image, chunk)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(match outcome {
            PartOutcome::Acknowledged(offset) => pb::AttachImagePartResponse {
                acknowledged_offset: offset,
                result: None,
            },
            PartOutcome::Done(result) => pb::AttachImagePartResponse {
                acknowledged_offset: result
                    .image
                    .as_ref()
                    .map_or(0, |image| image.original_size_bytes),
                result: Some(*result),
            },
        }))
    }

    /// `AttachWoundPhoto`: the same stream as `AttachImage`, whose header names the requester
    /// on whose behalf wound monitoring attaches the photo.
    pub(super) async fn attach_wound_photo(
        &self,
        request: Request<Streaming<pb::AttachWoundPhotoRequest>>,
    ) -> Result<Response<pb::AttachImageResponse>, Status> {
        let caller = require_caller(&request)?;
        let (header, chunks) = header_then_chunks(
            request.into_inner(),
            |message: pb::AttachWoundPhotoRequest| {
                message.part.map(|part| match part {
                    pb::attach_wound_photo_request::Part::Header(header) => {
                        UploadPart::Header(header)
                    }
                    pb::attach_wound_photo_request::Part::Chunk(chunk) => UploadPart::Chunk(chunk),
                })
            },
            "requester, request id and image header",
        )
        .await?;
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
        let result = self
            .core
            .attach_wound_photo(&caller, &requester, &id, image, chunks)
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

/// One message of an upload stream: its header (first message only) or a chunk.
enum UploadPart<H> {
    Header(H),
    Chunk(pb::ImageChunk),
}

/// The header an upload stream starts with, and the chunks after it (any other message in
/// either place is `INVALID_ARGUMENT`); `header_names` says what the header holds.
async fn header_then_chunks<M, H>(
    mut stream: Streaming<M>,
    part: fn(M) -> Option<UploadPart<H>>,
    header_names: &str,
) -> Result<(H, BoxStream<'static, Result<pb::ImageChunk, Status>>), Status>
where
    M: Send + 'static,
    H: 'static,
{
    let first = stream
        .next()
        .await
        .ok_or_else(|| Status::invalid_argument("the stream is empty: send the header first"))??;
    let Some(UploadPart::Header(header)) = part(first) else {
        return Err(Status::invalid_argument(format!(
            "the first message must be the header ({header_names})"
        )));
    };
    let chunks = stream.map(move |message| match part(message?) {
        Some(UploadPart::Chunk(chunk)) => Ok(chunk),
        _ => Err(Status::invalid_argument(
            "every message after the header must be a chunk",
        )),
    });
    Ok((header, chunks.boxed()))
}
