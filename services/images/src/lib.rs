//! The image pipeline shared by tele-expertise and wound (docs/images.md, contract in
//! `images.proto`): resumable streamed uploads straight to the blob store, real content type
//! from the bytes, identifying metadata removed without re-encoding, SHA-256 before and after,
//! downloads in chunks, cached thumbnails, and a sweeper for abandoned sessions and deleted
//! images.
//!
//! How an upload flows (see [`ImageStore::upload`]):
//! 0. The session is stored under a key hashed from the organisation, subject, target and the
//!    client-chosen id ([`session_key`]): another user's id finds nothing, exactly like an
//!    unknown one.
//! 1. Chunks are gathered into parts of `images.part_size_bytes` (4 MiB by default); each part
//!    is written to the store under a unique key, then recorded with the session's new
//!    acknowledged offset in one compare-and-set on the session row. Memory per upload is one
//!    part, whatever the file's size; a resume (on any replica) continues from the last stored
//!    byte. The receiving runs in a task of its own, so a broken stream (whose handler hyper
//!    drops) still stores the partial part it was gathering.
//! 2. The bytes go through the [`format::Sanitizer`], which checks the structure and removes
//!    metadata while copying into the image's final object (a multipart write), hashing both
//!    sides: as they stream in when the upload completes in one stream (nothing is read back),
//!    or read back from the stored parts at completion when it was resumed.
//! 3. One transaction marks the session completed, inserts the image and lets the owning
//!    service admit it ([`UploadTarget::admit`]): the image becomes an attachment atomically, or
//!    not at all. Every refusal discards the session and queues its bytes for deletion.
//!
//! The tables (`image_uploads`, `image_upload_parts`, `images`, `image_blob_garbage`) come with
//! the kit's migrations, so they exist in every service's schema; only the services that take
//! images write to them.
//!
//! The settings (`[blobs]`, `[images]`) are sections of the kit's `Settings`, and the test blob
//! stores are the kit's `testing::TestBlobs`: storage-level pieces every part's configuration
//! and tests share. Test images are in `format::fixtures` (feature `testing`).

#![forbid(unsafe_code)]

// Why the tables are not created here: they were the kit's migration `0002_images`
// (services/kit/migrations/{sqlite,postgres}/0002_images.sql) before this crate existed, and
// deployed databases record that version in the kit's sequence. Moving the files here would
// renumber or re-checksum applied history, so they stay in the kit's sequence (versions 1–99)
// and every service's `Database::migrate` keeps creating them.

mod blobs;
mod error;
pub mod format;
mod intake;
mod records;
mod store;
mod sweep;
mod upload;
mod verify;

pub use blobs::BlobStore;
pub use error::ImageError;
pub use store::{ImageStore, StoredImage};
pub use upload::{PartOutcome, session_key, single_part};
pub use verify::IntegrityReport;

use futures::future::BoxFuture;
use sqlx::AnyConnection;
use telehealth_proto::v1::ImageInfo;

/// Marks the ids of images ([`ImageId`]).
pub enum Image {}
/// The id of an image (a wound photo, an image of a tele-expertise request).
pub type ImageId = telehealth_kit::ids::Id<Image>;

/// The record an image belongs to, e.g. `("request", request_id)` or `("wound", wound_id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    pub kind: &'static str,
    pub id: String,
}

/// What an upload attaches to; implemented by each service that takes images.
pub trait UploadTarget: Send + Sync {
    /// The record the image will belong to.
    fn target(&self) -> TargetRef;

    /// Runs inside the transaction that makes the image visible, after the image row is
    /// inserted: re-checks what may have changed since the upload started (the request is still
    /// a draft, the wound is still open, the limit of images) and links the image where the
    /// service needs it. An error cancels the completion; the upload is discarded.
    fn admit<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        image: &'a ImageInfo,
    ) -> BoxFuture<'a, Result<(), ImageError>>;

    /// Runs before the first byte of a new or resumed upload is received (never for the retry
    /// of a completed one, which repeats its result): refuses at once what [`Self::admit`]
    /// would refuse for lack of room (e.g. the request already holds its 20 images), so the
    /// client does not send megabytes for nothing. Nothing is discarded; `admit` checks again
    /// at completion. By default there is nothing to check.
    fn check_room<'a>(
        &'a self,
        _conn: &'a mut AnyConnection,
    ) -> BoxFuture<'a, Result<(), ImageError>> {
        Box::pin(async { Ok(()) })
    }

    /// Whether a DICOM file may be uploaded here (a dermatoscope's); its photograph is what is
    /// stored (see `intake`). By default only photos.
    fn accepts_dicom(&self) -> bool {
        false
    }
}

/// Size of the chunks of uploads and downloads (the contract's maximum).
pub const CHUNK_BYTES: usize = 1024 * 1024;

pub use sweep::SweepReport;

use telehealth_kit::record::now_micros as now_us;

fn timestamp_us(us: i64) -> prost_types::Timestamp {
    telehealth_kit::record::timestamp(telehealth_kit::record::instant(us))
}

/// Session ids are client-chosen UUIDs.
fn check_session_id(session_id: &str) -> Result<(), ImageError> {
    if uuid::Uuid::try_parse(session_id).is_err() {
        return Err(ImageError::InvalidArgument(format!(
            "upload_session_id `{}` is not a UUID (generate a v4 UUID per upload)",
            clip(session_id)
        )));
    }
    Ok(())
}

/// An untrusted identifier, shortened for an error message.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}
