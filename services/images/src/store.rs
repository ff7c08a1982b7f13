//! [`ImageStore`]: what a service calls to take, list, serve and remove images.

use std::{sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use sqlx::AnyConnection;
use telehealth_proto::v1::{
    ImageChunk, ImageInfo, ImageUploadResult, ImageUploadState, ImageUploadStatus, Thumbnail,
};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{
    CHUNK_BYTES, ImageError, TargetRef,
    blobs::BlobStore,
    format::{self, ContentType},
    records::{self, ImageRow},
};
use telehealth_kit::{
    config::ImageSettings,
    db::Database,
    error::KitError,
    identity::Identity,
    metrics::{Counter, KeyValue, Metrics},
    serve::ServiceContext,
};

/// Smallest and largest thumbnail sides a client may ask for, in pixels.
pub const THUMBNAIL_SIDES: std::ops::RangeInclusive<u32> = 32..=512;

/// The image pipeline of one service: its database (session and image rows) and the blob store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    pub(super) db: Database,
    pub(super) blobs: BlobStore,
    pub(super) settings: ImageSettings,
    /// Uploads in flight on this server (each holds a few MiB).
    pub(super) uploads: Arc<tokio::sync::Semaphore>,
    /// DICOM files being imported on this server (each read whole into memory).
    pub(super) dicom_imports: Arc<tokio::sync::Semaphore>,
    /// Images stored and their bytes, by target kind (none for a store of tests and tools).
    pub(super) counted: Option<UploadCounters>,
}

/// The work metrics of uploads.
#[derive(Clone, Debug)]
pub(super) struct UploadCounters {
    pub images: Counter<u64>,
    pub bytes: Counter<u64>,
}

impl UploadCounters {
    fn new(metrics: &Metrics) -> UploadCounters {
        let meter = metrics.meter("telehealth.images");
        UploadCounters {
            images: meter
                .u64_counter("images.uploads")
                .with_description("Images stored, by what they are attached to")
                .build(),
            bytes: meter
                .u64_counter("images.uploaded")
                .with_unit("By")
                .with_description(
                    "Bytes of the images stored (after sanitizing), by what they are attached to",
                )
                .build(),
        }
    }

    pub fn record(&self, target: &'static str, bytes: i64) {
        let label = [KeyValue::new("target", target)];
        self.images.add(1, &label);
        self.bytes.add(u64::try_from(bytes).unwrap_or(0), &label);
    }
}

/// DICOM imports at once per server: each holds its file (≤ `images.max_size_bytes`) and the
/// parsed object in memory, so a burst of them cannot take more than about four files' worth.
const DICOM_IMPORTS_AT_ONCE: usize = 2;

/// A completed image and where it lives.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub info: ImageInfo,
    pub target: (String, String),
    blob_key: String,
}

impl ImageStore {
    /// Opens the store for a running service and starts its sweeper (expired sessions, bytes of
    /// deleted images), which stops with the service.
    pub async fn open(context: &ServiceContext) -> Result<ImageStore, KitError> {
        let mut store = ImageStore::new(
            context.db.clone(),
            BlobStore::open(&context.settings, context.part)?,
            context.settings.images.clone(),
        );
        store.counted = Some(UploadCounters::new(&context.metrics));
        let blobs = store.blobs.clone();
        context.dependencies.add("blob-store", move || {
            let blobs = blobs.clone();
            async move { blobs.ping().await.map_err(|e| e.to_string()) }
        });
        let sweeper = store.clone();
        let shutdown = context.shutdown.clone();
        let interval = Duration::from_secs(store.settings.sweep_interval_seconds);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
                if let Err(error) = sweeper.sweep().await {
                    tracing::warn!(%error, "image sweep failed; retried at the next interval");
                }
            }
        });
        Ok(store)
    }

    /// A store on explicit parts (tests, tools); no sweeper runs.
    pub fn new(db: Database, blobs: BlobStore, settings: ImageSettings) -> ImageStore {
        ImageStore {
            db,
            blobs,
            dicom_imports: Arc::new(tokio::sync::Semaphore::new(DICOM_IMPORTS_AT_ONCE)),
            counted: None,
            uploads: Arc::new(tokio::sync::Semaphore::new(
                settings.max_concurrent_uploads as usize,
            )),
            settings,
        }
    }

    /// The blob store (tests check what is left in it).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Where an upload session stands, for its owner and target only: the session is looked up
    /// under its key ([`super::session_key`]), so another user's id, an unknown, expired or
    /// refused session all get the same [`ImageError::SessionNotFound`].
    pub async fn upload_status(
        &self,
        caller: &Identity,
        target: &TargetRef,
        session_id: &str,
    ) -> Result<ImageUploadStatus, ImageError> {
        super::check_session_id(session_id)?;
        let key = super::session_key(caller, target, session_id);
        let session = records::find_session(self.db.pool(), &key)
            .await?
            .filter(|s| {
                s.owner_subject == caller.subject
                    && s.target_kind == target.kind
                    && s.target_id == target.id
            })
            .filter(|s| !s.discarded)
            .ok_or(ImageError::SessionNotFound)?;
        if session.completed {
            let image_id = session.image_id.as_deref().unwrap_or_default();
            let image = self
                .image(target, image_id)
                .await
                .map_err(|error| match error {
                    ImageError::ImageNotFound => ImageError::SessionNotFound,
                    other => other,
                })?;
            return Ok(ImageUploadStatus {
                upload_session_id: session_id.to_owned(),
                state: ImageUploadState::Completed.into(),
                acknowledged_offset: session.total_size,
                total_size_bytes: session.total_size,
                expires_at: None,
                result: Some(ImageUploadResult {
                    image: Some(image.info),
                    upload_session_id: session_id.to_owned(),
                    already_completed: true,
                }),
            });
        }
        if session.expires_at_us < super::now_us() {
            return Err(ImageError::SessionNotFound);
        }
        Ok(ImageUploadStatus {
            upload_session_id: session_id.to_owned(),
            state: ImageUploadState::InProgress.into(),
            acknowledged_offset: session.acknowledged,
            total_size_bytes: session.total_size,
            expires_at: Some(super::timestamp_us(session.expires_at_us)),
            result: None,
        })
    }

    /// One image of `target`; [`ImageError::ImageNotFound`] if it does not exist or belongs to
    /// another record.
    pub async fn image(
        &self,
        target: &TargetRef,
        image_id: &str,
    ) -> Result<StoredImage, ImageError> {
        if uuid::Uuid::try_parse(image_id).is_err() {
            return Err(ImageError::InvalidArgument(format!(
                "image_id `{}` is not a UUID",
                super::clip(image_id)
            )));
        }
        let row = records::find_image(self.db.pool(), image_id)
            .await?
            .filter(|row| row.target_kind == target.kind && row.target_id == target.id)
            .ok_or(ImageError::ImageNotFound)?;
        stored(row)
    }

    /// The images of `target`, oldest first, read on `conn` (so a service can list them inside
    /// its own transaction, e.g. to count them before admitting one more).
    pub async fn images_of(
        conn: &mut AnyConnection,
        target: &TargetRef,
    ) -> Result<Vec<ImageInfo>, ImageError> {
        records::images_of(conn, target.kind, &target.id)
            .await?
            .into_iter()
            .map(|row| stored(row).map(|image| image.info))
            .collect()
    }

    /// Removes an image of `target` inside the caller's transaction; its bytes (and cached
    /// thumbnails) are deleted by the sweeper after the commit. False if there was none.
    pub async fn detach(
        conn: &mut AnyConnection,
        target: &TargetRef,
        image_id: &str,
    ) -> Result<bool, ImageError> {
        Ok(records::delete_image(conn, target.kind, &target.id, image_id, super::now_us()).await?)
    }

    /// The stored bytes of `image` from `offset`, in chunks of at most 1 MiB.
    pub async fn download(
        &self,
        image: &StoredImage,
        offset: i64,
    ) -> Result<impl Stream<Item = Result<ImageChunk, ImageError>> + Send + use<>, ImageError> {
        let size = image.info.size_bytes;
        if offset < 0 || offset > size {
            return Err(ImageError::InvalidArgument(format!(
                "offset {offset} is outside the image (0 to {size} bytes)"
            )));
        }
        let bytes = if offset == size {
            futures::stream::empty().boxed()
        } else {
            self.blobs
                .read_from(&image.blob_key, offset as u64)
                .await?
                .map_err(ImageError::from)
                .boxed()
        };
        Ok(rechunk(bytes, offset))
    }

    /// All the stored bytes of `image` at once (for a copy elsewhere, e.g. a PACS; images are
    /// bounded by `images.max_size_bytes`), checked against its recorded size and SHA-256.
    pub async fn read_all(&self, image: &StoredImage) -> Result<Bytes, ImageError> {
        let bytes = self
            .blobs
            .read_all(&image.blob_key)
            .await?
            .ok_or(ImageError::ImageNotFound)?;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if i64::try_from(bytes.len()).ok() != Some(image.info.size_bytes)
            || digest != image.info.sha256_hex
        {
            return Err(ImageError::Corrupt(format!(
                "the stored bytes of image {} do not match its record",
                image.info.image_id
            )));
        }
        Ok(bytes)
    }

    /// A JPEG preview of `image` whose longest side is `max_side` (32 to 512 px), made on first
    /// request and kept in the store.
    pub async fn thumbnail(
        &self,
        image: &StoredImage,
        max_side: u32,
    ) -> Result<Thumbnail, ImageError> {
        if !THUMBNAIL_SIDES.contains(&max_side) {
            return Err(ImageError::InvalidArgument(format!(
                "thumbnail size {max_side} is out of {}..{} pixels",
                THUMBNAIL_SIDES.start(),
                THUMBNAIL_SIDES.end()
            )));
        }
        let image_id = &image.info.image_id;
        let key = format!("{}{max_side}.pb", records::thumbnail_prefix(image_id));
        if let Some(bytes) = self.blobs.read_all(&key).await? {
            return Thumbnail::decode(bytes).map_err(|e| ImageError::Corrupt(e.to_string()));
        }
        let content_type = match image.info.content_type() {
            telehealth_proto::v1::ImageContentType::Jpeg => ContentType::Jpeg,
            telehealth_proto::v1::ImageContentType::Png => ContentType::Png,
            other => {
                return Err(ImageError::NoThumbnail(format!(
                    "{} images have no thumbnail",
                    other.as_str_name()
                )));
            }
        };
        let orientation = u8::try_from(image.info.exif_orientation)
            .ok()
            .filter(|o| (1..=8).contains(o));
        let bytes = self
            .blobs
            .read_from(&image.blob_key, 0)
            .await?
            .map_err(std::io::Error::other);
        let reader = SyncIoBridge::new(StreamReader::new(bytes));
        let made = tokio::task::spawn_blocking(move || {
            format::thumbnail(reader, content_type, orientation, max_side)
        })
        .await
        .map_err(|e| ImageError::NoThumbnail(format!("thumbnail task failed: {e}")))?
        .map_err(|e| ImageError::NoThumbnail(e.to_string()))?;
        let thumbnail = Thumbnail {
            image_id: image_id.clone(),
            jpeg_data: made.jpeg,
            width_px: made.width as i32,
            height_px: made.height as i32,
        };
        self.blobs
            .put(&key, Bytes::from(thumbnail.encode_to_vec()))
            .await?;
        Ok(thumbnail)
    }
}

pub(super) fn stored(row: ImageRow) -> Result<StoredImage, ImageError> {
    let info = ImageInfo::decode(row.info_pb.as_slice())
        .map_err(|e| ImageError::Corrupt(format!("image {}: {e}", row.image_id)))?;
    Ok(StoredImage {
        info,
        target: (row.target_kind, row.target_id),
        blob_key: row.blob_key,
    })
}

/// Regroups the store's byte stream into contract chunks of at most 1 MiB, numbered by offset.
fn rechunk(
    bytes: futures::stream::BoxStream<'static, Result<Bytes, ImageError>>,
    start: i64,
) -> impl Stream<Item = Result<ImageChunk, ImageError>> + Send + use<> {
    struct State {
        bytes: futures::stream::BoxStream<'static, Result<Bytes, ImageError>>,
        pending: BytesMut,
        offset: i64,
        done: bool,
    }
    let state = State {
        bytes,
        pending: BytesMut::new(),
        offset: start,
        done: false,
    };
    futures::stream::try_unfold(state, |mut state| async move {
        while !state.done && state.pending.len() < CHUNK_BYTES {
            match state.bytes.next().await {
                Some(piece) => state.pending.extend_from_slice(&piece?),
                None => state.done = true,
            }
        }
        if state.pending.is_empty() {
            return Ok(None);
        }
        let take = state.pending.len().min(CHUNK_BYTES);
        let data = state.pending.split_to(take).freeze();
        let chunk = ImageChunk {
            offset: state.offset,
            data: data.to_vec(),
        };
        state.offset += take as i64;
        Ok(Some((chunk, state)))
    })
}
