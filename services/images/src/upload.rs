//! Taking one upload stream: header checks, resumable parts, then completion.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use prost::Message;
use sha2::{Digest, Sha256};
use telehealth_proto::v1::{
    ImageChunk, ImageContentType, ImageInfo, ImageKind, ImageUploadHeader, ImageUploadResult,
    StrippedMetadata,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::{
    CHUNK_BYTES, ImageError, ImageStore, TargetRef, UploadTarget,
    format::{ContentType, ImageFacts, SanitizeOptions, Sanitizer, StrippedCategory},
    intake::{self, Intake, Taken},
    records::{self, ImageRow, PartRow, SessionRow},
    store::stored,
};
use telehealth_kit::{
    error::ErrorCode,
    identity::{Caller, Identity},
    record::ActorRecord,
};

/// How much of a fresh upload is checked while it arrives (headers, dimensions).
const PROBE_BYTES: usize = 256 * 1024;
/// Longest caption, in characters.
const MAX_CAPTION_CHARS: usize = 500;
/// Longest body site description, in characters.
const MAX_SITE_DESCRIPTION_CHARS: usize = 200;
/// How long a stream whose call was abandoned may stay silent before what arrived is stored.
const ABANDONED_GRACE: Duration = Duration::from_secs(5);

impl ImageStore {
    /// Takes one upload stream for `target` (see `images.proto`): `header` is the stream's first
    /// message (already read by the service, which also checked that `caller` may attach images
    /// to the target), `chunks` the rest. Returns the stored image once every byte is in and the
    /// target admitted it; a stream that ends early leaves the session resumable.
    ///
    /// The session is found under its key ([`session_key`]): the client's id names a session of
    /// this caller and target only, so another user's id finds nothing and is answered exactly
    /// as an unknown one.
    pub async fn upload<S>(
        &self,
        caller: &Identity,
        target: &dyn UploadTarget,
        header: ImageUploadHeader,
        accepted: &[ImageKind],
        chunks: S,
    ) -> Result<ImageUploadResult, ImageError>
    where
        S: Stream<Item = Result<ImageChunk, Status>> + Unpin + Send + 'static,
    {
        self.check_header(&header, accepted)?;
        // Memory is bounded per upload; the number of uploads in flight is bounded per server.
        let permit = self
            .uploads
            .clone()
            .try_acquire_owned()
            .map_err(|_| ImageError::Busy)?;
        let target_ref = target.target();
        let client_id = header.upload_session_id.clone();
        let key = session_key(caller, &target_ref, &client_id);
        let now = super::now_us();
        let expiry = self.expiry_from(now);

        let mut room_checked = false;
        let session = match records::find_session(self.db.pool(), &key).await? {
            Some(session) => session,
            None if header.resume_offset > 0 => return Err(ImageError::SessionNotFound),
            None => {
                // Refused before a session exists, and before any byte is sent.
                self.check_room(target).await?;
                room_checked = true;
                let fresh = SessionRow {
                    key: key.clone(),
                    owner_subject: caller.subject.clone(),
                    target_kind: target_ref.kind.to_owned(),
                    target_id: target_ref.id.clone(),
                    header_pb: ImageUploadHeader {
                        resume_offset: 0,
                        ..header.clone()
                    }
                    .encode_to_vec(),
                    total_size: header.total_size_bytes,
                    acknowledged: 0,
                    completed: false,
                    discarded: false,
                    image_id: None,
                    expires_at_us: expiry,
                };
                if records::insert_session(self.db.pool(), &fresh, now).await? {
                    fresh
                } else {
                    // Created meanwhile by another stream: judge it like any existing session.
                    records::find_session(self.db.pool(), &key)
                        .await?
                        .ok_or(ImageError::SessionNotFound)?
                }
            }
        };
        // The key already binds the session to its owner and target; checked again all the same
        // (answered as a missing session, never as someone else's).
        if session.owner_subject != caller.subject
            || session.target_kind != target_ref.kind
            || session.target_id != target_ref.id
        {
            return Err(ImageError::SessionNotFound);
        }
        if session.discarded {
            // The caller's own refused or expired session: its id is not reused while its bytes
            // are being deleted.
            return Err(if header.resume_offset > 0 {
                ImageError::SessionNotFound
            } else {
                ImageError::SessionTaken
            });
        }
        check_same_header(&session, &header)?;
        if session.completed {
            // A retry after a lost response: the same result, nothing stored again.
            let image_id = session.image_id.as_deref().unwrap_or_default();
            let image = self
                .image(&target_ref, image_id)
                .await
                .map_err(|e| match e {
                    ImageError::ImageNotFound => ImageError::SessionNotFound,
                    other => other,
                })?;
            return Ok(ImageUploadResult {
                image: Some(image.info),
                upload_session_id: client_id,
                already_completed: true,
            });
        }
        if session.expires_at_us < now {
            self.discard(&key).await;
            return Err(ImageError::SessionNotFound);
        }
        if header.resume_offset != session.acknowledged {
            return Err(ImageError::ResumeOffset {
                given: header.resume_offset,
                acknowledged: session.acknowledged,
            });
        }
        if !room_checked {
            self.check_room(target).await?;
        }

        // A fresh upload is sanitized, hashed and copied to its final object while it streams
        // in (one pass); a resumed one is read back from its stored parts at completion.
        let live = if session.acknowledged == 0 {
            Some(self.live_copy(target.accepts_dicom()).await?)
        } else {
            None
        };
        let (live, _permit) = self
            .receive_detached(
                session.clone(),
                chunks,
                live,
                permit,
                target.accepts_dicom(),
            )
            .await?;
        let result = self.complete(caller, target, &session, &header, live).await;
        let Err(error) = result else {
            return result;
        };
        // Another stream of this session may have completed it meanwhile (its parts are then
        // gone): answer with its image rather than with this stream's failure.
        if let Ok(Some(now)) = records::find_session(self.db.pool(), &key).await
            && now.completed
            && let Some(image_id) = now.image_id.as_deref()
            && let Ok(image) = self.image(&target_ref, image_id).await
        {
            return Ok(ImageUploadResult {
                image: Some(image.info),
                upload_session_id: client_id,
                already_completed: true,
            });
        }
        // Refusals end the session; a transient failure (database, store) leaves it resumable.
        let refused = match &error {
            ImageError::Refused(_) | ImageError::ChecksumMismatch { .. } => true,
            ImageError::Target { code, .. } => matches!(
                code,
                ErrorCode::InvalidArgument
                    | ErrorCode::FailedPrecondition
                    | ErrorCode::NotFound
                    | ErrorCode::PermissionDenied
            ),
            _ => false,
        };
        if refused {
            self.discard(&key).await;
        }
        Err(error)
    }

    /// Asks the target whether it has room for one more image (see [`UploadTarget::check_room`]).
    async fn check_room(&self, target: &dyn UploadTarget) -> Result<(), ImageError> {
        let mut conn = self.db.pool().acquire().await?;
        target.check_room(&mut conn).await
    }

    /// Receives the chunks in a task of its own, so that what arrived is stored even when the
    /// client's stream breaks: hyper then drops the call's handler (this future), which would
    /// cancel a receive running inside it, losing the part being gathered (up to
    /// `part_size_bytes`). The task ends with the stream: it stores the partial part (the
    /// acknowledged offset becomes everything stored), aborts the live copy and discards a
    /// refused session, whether or not anyone still waits for it. On success it hands back the
    /// live copy and the upload's permit for the completion.
    async fn receive_detached<S>(
        &self,
        session: SessionRow,
        chunks: S,
        live: Option<LiveCopy>,
        permit: OwnedSemaphorePermit,
        dicom: bool,
    ) -> Result<(Option<LiveCopy>, OwnedSemaphorePermit), ImageError>
    where
        S: Stream<Item = Result<ImageChunk, Status>> + Unpin + Send + 'static,
    {
        let store = self.clone();
        let abandoned = CancellationToken::new();
        // Fires when this future is dropped (the call is gone) as well as when it ends.
        let _abandon_when_dropped = abandoned.clone().drop_guard();
        let task = tokio::spawn(async move {
            let (mut chunks, mut live) = (chunks, live);
            let received = store
                .receive(&session, &mut chunks, live.as_mut(), dicom, &abandoned)
                .await;
            if let Err(error) = received {
                if let Some(copy) = live.take() {
                    copy.writer.abort().await;
                }
                if matches!(
                    error,
                    ImageError::InvalidArgument(_) | ImageError::Refused(_)
                ) {
                    store.discard(&session.key).await;
                }
                return Err(error);
            }
            Ok((live, permit))
        });
        task.await
            .map_err(|error| ImageError::Task(error.to_string()))?
    }

    fn check_header(
        &self,
        header: &ImageUploadHeader,
        accepted: &[ImageKind],
    ) -> Result<(), ImageError> {
        let bad = |message: String| Err(ImageError::InvalidArgument(message));
        super::check_session_id(&header.upload_session_id)?;
        if header.resume_offset < 0 {
            return bad(format!(
                "resume_offset {} is negative",
                header.resume_offset
            ));
        }
        let limit = self.settings.max_size_bytes;
        if header.total_size_bytes <= 0 {
            return bad("total_size_bytes must be the file's size in bytes (> 0)".into());
        }
        if header.total_size_bytes as u64 > limit {
            return bad(format!(
                "total_size_bytes {} is over the size limit of {limit} bytes",
                header.total_size_bytes
            ));
        }
        if header.resume_offset > header.total_size_bytes {
            return bad("resume_offset is beyond total_size_bytes".into());
        }
        let kind = ImageKind::try_from(header.declared_kind).unwrap_or(ImageKind::Unspecified);
        if !accepted.contains(&kind) {
            let names: Vec<&str> = accepted.iter().map(|k| k.as_str_name()).collect();
            return bad(format!(
                "declared_kind {} is not accepted here; accepted: {}",
                kind.as_str_name(),
                names.join(", ")
            ));
        }
        let needs_site = matches!(
            kind,
            ImageKind::Dermatoscopy
                | ImageKind::Overview
                | ImageKind::CloseUp
                | ImageKind::WoundPhoto
        );
        match &header.body_site {
            Some(site) => {
                if needs_site && site.region == 0 {
                    return bad("body_site.region is required for this kind of image".into());
                }
                if site.description.chars().count() > MAX_SITE_DESCRIPTION_CHARS {
                    return bad(format!(
                        "body_site.description is over {MAX_SITE_DESCRIPTION_CHARS} characters"
                    ));
                }
                let code = &site.snomed_ct_code;
                if !(code.is_empty() || is_snomed_code(code)) {
                    return bad("body_site.snomed_ct_code must be 6 to 18 digits".into());
                }
            }
            None if needs_site => return bad("body_site is required for this kind of image".into()),
            None => {}
        }
        let checksum = &header.client_sha256_hex;
        if !(checksum.is_empty() || is_sha256_hex(checksum)) {
            return bad("client_sha256_hex must be 64 hexadecimal characters (or empty)".into());
        }
        if header.caption.chars().count() > MAX_CAPTION_CHARS {
            return bad(format!("caption is over {MAX_CAPTION_CHARS} characters"));
        }
        if let Some(at) = &header.captured_at
            && !(0..1_000_000_000).contains(&at.nanos)
        {
            return bad("captured_at has invalid nanos".into());
        }
        Ok(())
    }

    /// Reads chunks, storing them part by part. Ends when the client closes its side; a broken
    /// stream keeps what was received (stored as a last part) so the client can resume from
    /// every byte that arrived. Once the call is `abandoned`, a stream silent for
    /// [`ABANDONED_GRACE`] counts as broken.
    async fn receive<S>(
        &self,
        session: &SessionRow,
        chunks: &mut S,
        mut live: Option<&mut LiveCopy>,
        dicom: bool,
        abandoned: &CancellationToken,
    ) -> Result<(), ImageError>
    where
        S: Stream<Item = Result<ImageChunk, Status>> + Unpin + Send,
    {
        let part_size = self.settings.part_size_bytes as usize;
        let total = session.total_size;
        let mut offset = session.acknowledged;
        let mut part_start = offset;
        let mut buffer: Vec<u8> = Vec::with_capacity(part_size.min(total as usize));
        // A resumed upload's first bytes go through a throwaway sanitizer when they start the
        // file, so that a file that is not an image, or declares absurd dimensions, is refused
        // before it is all sent (a fresh upload is checked whole by its live copy).
        let mut probe = (offset == 0 && live.is_none())
            .then(|| (Intake::new(self.sanitizer(), dicom), Vec::new(), 0usize));
        loop {
            let chunk = match next_chunk(chunks, abandoned).await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(status)) => {
                    // Keep what arrived intact; the client resumes from there.
                    self.store_part(&session.key, part_start, &mut buffer)
                        .await?;
                    return Err(ImageError::ClientStream(status.message().to_owned()));
                }
            };
            let length = chunk.data.len();
            if chunk.offset != offset {
                return Err(ImageError::InvalidArgument(format!(
                    "chunk offset {} out of order: expected {offset}",
                    chunk.offset
                )));
            }
            if length == 0 || length > CHUNK_BYTES {
                return Err(ImageError::InvalidArgument(format!(
                    "chunk of {length} bytes: chunks hold 1 byte to 1 MiB"
                )));
            }
            if offset + length as i64 > total {
                return Err(ImageError::InvalidArgument(format!(
                    "more bytes than declared: total_size_bytes is {total}"
                )));
            }
            if let Some(copy) = live.as_deref_mut() {
                copy.push(&chunk.data).await?;
            }
            buffer.extend_from_slice(&chunk.data);
            offset += length as i64;
            if let Some((intake, output, probed)) = &mut probe {
                intake.push(&chunk.data, output)?;
                output.clear();
                *probed += length;
                if *probed >= PROBE_BYTES {
                    probe = None;
                }
            }
            if buffer.len() >= part_size {
                self.store_part(&session.key, part_start, &mut buffer)
                    .await?;
                part_start = offset;
            }
        }
        self.store_part(&session.key, part_start, &mut buffer)
            .await?;
        if offset < total {
            return Err(ImageError::Incomplete {
                acknowledged: offset,
                total,
            });
        }
        Ok(())
    }

    /// Writes `buffer` as the part starting at `start` and advances the session; empties it.
    async fn store_part(
        &self,
        key: &str,
        start: i64,
        buffer: &mut Vec<u8>,
    ) -> Result<(), ImageError> {
        if buffer.is_empty() {
            return Ok(());
        }
        let blob_key = format!(
            "{}{start:016}-{}",
            records::staging_prefix(key),
            uuid::Uuid::new_v4()
        );
        let bytes = Bytes::from(std::mem::take(buffer));
        let size = bytes.len() as i64;
        self.blobs.put(&blob_key, bytes).await?;
        let now = super::now_us();
        let part = PartRow {
            start_offset: start,
            size,
            blob_key,
        };
        if !records::append_part(self.db.pool(), key, &part, now, self.expiry_from(now)).await? {
            // Another stream moved the session on (or it was discarded): these bytes are spare.
            let mut conn = self.db.pool().acquire().await?;
            records::add_garbage(&mut conn, &part.blob_key, now).await?;
            return Err(ImageError::Superseded);
        }
        Ok(())
    }

    /// Reads the stored parts back through the sanitizer into the image's object, checks the
    /// checksum, then makes the image visible in one transaction with the target's admission.
    async fn complete(
        &self,
        caller: &Identity,
        target: &dyn UploadTarget,
        session: &SessionRow,
        header: &ImageUploadHeader,
        live: Option<LiveCopy>,
    ) -> Result<ImageUploadResult, ImageError> {
        let mut live = match live {
            Some(live) => live,
            None => {
                let mut copy = self.live_copy(target.accepts_dicom()).await?;
                let parts = records::parts(self.db.pool(), &session.key).await?;
                if let Err(error) = self.read_back(&parts, &mut copy).await {
                    copy.writer.abort().await;
                    return Err(error);
                }
                copy
            }
        };
        let taken = match live.finish().await {
            Ok(Taken::Image(facts)) => Ok((facts, None)),
            Ok(Taken::Dicom) => self.import_dicom(session, &mut live).await,
            Err(error) => Err(error),
        };
        let (facts, dicom_captured_at) = match taken {
            Ok(taken) => taken,
            Err(error) => {
                live.writer.abort().await;
                return Err(error);
            }
        };
        let LiveCopy {
            writer,
            image_id,
            blob_key,
            original,
            stored: stored_hash,
            original_size,
            stored_size,
            ..
        } = live;
        let copy = Copy {
            facts,
            dicom_captured_at,
            original_size,
            original_sha256: hex::encode(original.finalize()),
            stored_size,
            stored_sha256: hex::encode(stored_hash.finalize()),
        };
        let declared = header.client_sha256_hex.to_ascii_lowercase();
        if copy.original_size != session.total_size {
            writer.abort().await;
            return Err(ImageError::Corrupt(format!(
                "stored parts hold {} bytes, expected {}",
                copy.original_size, session.total_size
            )));
        }
        if !declared.is_empty() && declared != copy.original_sha256 {
            writer.abort().await;
            return Err(ImageError::ChecksumMismatch {
                declared,
                actual: copy.original_sha256,
            });
        }
        writer.finish().await?;

        let now = super::now_us();
        let info = image_info(&image_id, caller, header, &copy, now);
        let target_ref = target.target();
        let row = ImageRow {
            image_id: image_id.clone(),
            target_kind: target_ref.kind.to_owned(),
            target_id: target_ref.id.clone(),
            blob_key: blob_key.clone(),
            size_bytes: copy.stored_size,
            info_pb: info.encode_to_vec(),
        };
        let mut tx = self.db.pool().begin().await?;
        let committed = async {
            if !records::complete_session(&mut tx, &session.key, &row, now).await? {
                return Ok(false);
            }
            target.admit(&mut tx, &info).await?;
            Ok::<_, ImageError>(true)
        }
        .await;
        match committed {
            Ok(true) => {
                tx.commit().await?;
                if let Some(counted) = &self.counted {
                    counted.record(target_ref.kind, copy.stored_size);
                }
                self.collect_soon();
                Ok(ImageUploadResult {
                    image: Some(info),
                    upload_session_id: header.upload_session_id.clone(),
                    already_completed: false,
                })
            }
            Ok(false) => {
                // Another stream completed the session first: its image stands, ours goes.
                drop(tx);
                self.forget_blob(&blob_key).await;
                let winner = records::find_session(self.db.pool(), &session.key)
                    .await?
                    .and_then(|s| s.image_id)
                    .ok_or(ImageError::SessionNotFound)?;
                let row = records::find_image(self.db.pool(), &winner)
                    .await?
                    .ok_or(ImageError::SessionNotFound)?;
                Ok(ImageUploadResult {
                    image: Some(stored(row)?.info),
                    upload_session_id: header.upload_session_id.clone(),
                    already_completed: true,
                })
            }
            Err(error) => {
                drop(tx);
                self.forget_blob(&blob_key).await;
                Err(error)
            }
        }
    }

    /// A new final object with its sanitizer and hashes, ready to take the file from offset 0.
    async fn live_copy(&self, dicom: bool) -> Result<LiveCopy, ImageError> {
        let image_id = uuid::Uuid::new_v4().to_string();
        let blob_key = format!("images/{image_id}");
        Ok(LiveCopy {
            writer: self.blobs.writer(&blob_key).await?,
            image_id,
            blob_key,
            intake: Intake::new(self.sanitizer(), dicom),
            original: Sha256::new(),
            stored: Sha256::new(),
            original_size: 0,
            stored_size: 0,
            out: Vec::with_capacity(CHUNK_BYTES),
        })
    }

    /// Feeds a resumed upload's stored parts, in order, through `copy`.
    async fn read_back(&self, parts: &[PartRow], copy: &mut LiveCopy) -> Result<(), ImageError> {
        let mut expected_start = 0;
        for part in parts {
            if part.start_offset != expected_start {
                return Err(ImageError::Corrupt(format!(
                    "stored parts are not contiguous at offset {expected_start}"
                )));
            }
            expected_start += part.size;
            let mut bytes = self.blobs.read_from(&part.blob_key, 0).await?;
            while let Some(piece) = bytes.next().await {
                let piece = piece?;
                for slice in piece.chunks(CHUNK_BYTES) {
                    copy.push(slice).await?;
                }
            }
        }
        Ok(())
    }

    /// Imports the DICOM file held by the session's stored parts and writes its photograph into
    /// `copy`. The whole file is read into memory (bounded by `max_size_bytes`), so a few
    /// imports at a time per server: the others wait.
    async fn import_dicom(
        &self,
        session: &SessionRow,
        copy: &mut LiveCopy,
    ) -> Result<(ImageFacts, Option<jiff::Timestamp>), ImageError> {
        let _permit = self
            .dicom_imports
            .acquire()
            .await
            .map_err(|_| ImageError::Busy)?;
        let mut file = Vec::with_capacity(usize::try_from(session.total_size).unwrap_or(0));
        let parts = records::parts(self.db.pool(), &session.key).await?;
        for part in &parts {
            let mut bytes = self.blobs.read_from(&part.blob_key, 0).await?;
            while let Some(piece) = bytes.next().await {
                file.extend_from_slice(&piece?);
            }
        }
        if file.len() as i64 != session.total_size {
            return Err(ImageError::Corrupt(format!(
                "stored parts hold {} bytes, expected {}",
                file.len(),
                session.total_size
            )));
        }
        let max_side_px = self.settings.max_side_px;
        let imported = tokio::task::spawn_blocking(move || intake::import(&file, max_side_px))
            .await
            .map_err(|error| ImageError::Task(error.to_string()))??;
        let mut facts = copy.write_photo(&imported.photo, self.sanitizer()).await?;
        intake::report_dropped(&mut facts, &imported.dropped);
        Ok((facts, imported.captured_at))
    }

    /// Deletes an in-progress session now (refused input); its bytes go to the sweeper.
    pub(super) async fn discard(&self, key: &str) {
        let now = super::now_us();
        match records::discard_session(self.db.pool(), key, None, now, self.expiry_from(now)).await
        {
            Ok(_) => self.collect_soon(),
            Err(error) => {
                tracing::warn!(%error, session_key = key, "could not discard an upload session; it will expire")
            }
        }
    }

    async fn forget_blob(&self, key: &str) {
        let queued = async {
            let mut conn = self.db.pool().acquire().await?;
            records::add_garbage(&mut conn, key, super::now_us()).await
        };
        if let Err(error) = queued.await {
            tracing::warn!(%error, key, "could not queue a spare blob for deletion");
        }
        self.collect_soon();
    }

    fn sanitizer(&self) -> Sanitizer {
        Sanitizer::new(SanitizeOptions {
            max_side_px: self.settings.max_side_px,
            max_pixels: self.settings.max_pixels,
            strip_capture_date_time: self.settings.strip_capture_date_time,
        })
    }

    pub(super) fn expiry_from(&self, now_us: i64) -> i64 {
        now_us
            .saturating_add((self.settings.session_expiry_seconds as i64).saturating_mul(1_000_000))
    }
}

/// What the read-back produced.
struct Copy {
    facts: ImageFacts,
    /// The acquisition time an imported DICOM file gave.
    dicom_captured_at: Option<jiff::Timestamp>,
    original_size: i64,
    original_sha256: String,
    stored_size: i64,
    stored_sha256: String,
}

fn is_snomed_code(code: &str) -> bool {
    (6..=18).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit())
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The image's final object being written: every byte of the file from offset 0 goes through
/// the sanitizer into it, and both sides are hashed.
struct LiveCopy {
    writer: super::blobs::BlobWriter,
    image_id: String,
    blob_key: String,
    intake: Intake,
    original: Sha256,
    stored: Sha256,
    original_size: i64,
    stored_size: i64,
    out: Vec<u8>,
}

impl LiveCopy {
    async fn push(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.original.update(bytes);
        self.original_size += bytes.len() as i64;
        self.intake.push(bytes, &mut self.out)?;
        self.flush_out().await
    }

    /// End of the file: the sanitizer's verdict and last bytes, or a DICOM file to import.
    async fn finish(&mut self) -> Result<Taken, ImageError> {
        let taken = self.intake.finish(&mut self.out)?;
        self.flush_out().await?;
        Ok(taken)
    }

    /// Writes the photograph of an imported DICOM file through a sanitizer of its own.
    async fn write_photo(
        &mut self,
        photo: &[u8],
        mut sanitizer: Sanitizer,
    ) -> Result<ImageFacts, ImageError> {
        for piece in photo.chunks(CHUNK_BYTES) {
            sanitizer.push(piece, &mut self.out)?;
            self.flush_out().await?;
        }
        let facts = sanitizer.finish(&mut self.out)?;
        self.flush_out().await?;
        Ok(facts)
    }

    async fn flush_out(&mut self) -> Result<(), ImageError> {
        if !self.out.is_empty() {
            self.stored.update(&self.out);
            self.stored_size += self.out.len() as i64;
            self.writer.write(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}

/// The key an upload session is stored under: a SHA-256 of the organisation, the subject, the
/// target and the client-chosen id (as a canonical UUID), each length-prefixed. Session ids are
/// chosen by clients, so a table keyed by them would tell a probing user whether someone else
/// used an id (and let him block it); keyed by this, a session exists only for the caller and
/// target that created it, and another user's id simply finds nothing. Status requests,
/// resumes, tombstones and the staged parts' blob keys all go through it.
pub fn session_key(caller: &Identity, target: &TargetRef, client_id: &str) -> String {
    let canonical = uuid::Uuid::try_parse(client_id)
        .map(|id| id.to_string())
        .unwrap_or_else(|_| client_id.to_owned());
    let mut hash = Sha256::new();
    for field in [
        "telehealth.images.upload-session.v1",
        caller.org.as_str(),
        caller.subject.as_str(),
        target.kind,
        target.id.as_str(),
        canonical.as_str(),
    ] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// The next message of the client's stream. After the call was abandoned (hyper dropped its
/// handler), the stream still yields what had arrived, then its error or end; one that stays
/// silent for [`ABANDONED_GRACE`] is taken as broken, so the task never waits forever.
async fn next_chunk<S>(
    chunks: &mut S,
    abandoned: &CancellationToken,
) -> Option<Result<ImageChunk, Status>>
where
    S: Stream<Item = Result<ImageChunk, Status>> + Unpin,
{
    let silent_after_abandon = async {
        abandoned.cancelled().await;
        tokio::time::sleep(ABANDONED_GRACE).await;
    };
    tokio::select! {
        biased;
        next = chunks.next() => next,
        () = silent_after_abandon => Some(Err(Status::cancelled("the call was abandoned"))),
    }
}

fn check_same_header(session: &SessionRow, header: &ImageUploadHeader) -> Result<(), ImageError> {
    let original = ImageUploadHeader::decode(session.header_pb.as_slice())
        .map_err(|e| ImageError::Corrupt(format!("session header: {e}")))?;
    if original.total_size_bytes != header.total_size_bytes {
        return Err(ImageError::HeaderChanged("total_size_bytes"));
    }
    if original.declared_kind != header.declared_kind {
        return Err(ImageError::HeaderChanged("declared_kind"));
    }
    if !original
        .client_sha256_hex
        .eq_ignore_ascii_case(&header.client_sha256_hex)
    {
        return Err(ImageError::HeaderChanged("client_sha256_hex"));
    }
    if original.body_site != header.body_site {
        return Err(ImageError::HeaderChanged("body_site"));
    }
    Ok(())
}

fn image_info(
    image_id: &str,
    caller: &Identity,
    header: &ImageUploadHeader,
    copy: &Copy,
    now_us: i64,
) -> ImageInfo {
    let facts = &copy.facts;
    ImageInfo {
        image_id: image_id.to_owned(),
        kind: header.declared_kind,
        body_site: header.body_site.clone(),
        content_type: match facts.content_type {
            ContentType::Jpeg => ImageContentType::Jpeg,
            ContentType::Png => ImageContentType::Png,
        }
        .into(),
        size_bytes: copy.stored_size,
        sha256_hex: copy.stored_sha256.clone(),
        original_size_bytes: copy.original_size,
        original_sha256_hex: copy.original_sha256.clone(),
        width_px: i32::try_from(facts.width).unwrap_or(i32::MAX),
        height_px: i32::try_from(facts.height).unwrap_or(i32::MAX),
        exif_orientation: facts.exif_orientation.map_or(0, i32::from),
        stripped_metadata: facts
            .stripped
            .iter()
            .map(|category| stripped_metadata(*category) as i32)
            .collect(),
        stripped_tags: facts.stripped_tags.clone(),
        caption: header.caption.clone(),
        // The client's time first: the person attaching the image may know better.
        captured_at: header.captured_at.or_else(|| {
            copy.dicom_captured_at
                .map(telehealth_kit::record::timestamp)
        }),
        uploaded_at: Some(super::timestamp_us(now_us)),
        uploaded_by: Some(ActorRecord::of(&Caller::Person(caller.clone())).to_proto()),
    }
}

fn stripped_metadata(category: StrippedCategory) -> StrippedMetadata {
    match category {
        StrippedCategory::GpsLocation => StrippedMetadata::GpsLocation,
        StrippedCategory::DeviceIdentifiers => StrippedMetadata::DeviceIdentifiers,
        StrippedCategory::PersonNames => StrippedMetadata::PersonNames,
        StrippedCategory::EmbeddedThumbnail => StrippedMetadata::EmbeddedThumbnail,
        StrippedCategory::MakerNotes => StrippedMetadata::MakerNotes,
        StrippedCategory::Xmp => StrippedMetadata::Xmp,
        StrippedCategory::Iptc => StrippedMetadata::Iptc,
        StrippedCategory::TextComments => StrippedMetadata::TextComments,
        StrippedCategory::CaptureDateTime => StrippedMetadata::CaptureDateTime,
        StrippedCategory::DicomIdentifiers => StrippedMetadata::DicomIdentifiers,
    }
}

/// Where an upload stands after one part sent in its own call (the browser variants of the
/// upload RPCs, which cannot stream a request).
#[derive(Debug, Clone)]
pub enum PartOutcome {
    /// Stored up to this offset: send the next part from there.
    Acknowledged(i64),
    /// Every byte is in: the stored image.
    Done(Box<ImageUploadResult>),
}

impl PartOutcome {
    /// The outcome of an upload given one part: ending before the last byte is progress here.
    pub fn of(result: Result<ImageUploadResult, ImageError>) -> Result<PartOutcome, ImageError> {
        match result {
            Ok(done) => Ok(PartOutcome::Done(Box::new(done))),
            Err(ImageError::Incomplete { acknowledged, .. }) => {
                Ok(PartOutcome::Acknowledged(acknowledged))
            }
            Err(error) => Err(error),
        }
    }
}

/// The header and chunk stream of one part sent in its own call: the header resumes at the
/// chunk's offset, and the stream is that chunk alone.
pub fn single_part(
    mut header: ImageUploadHeader,
    chunk: ImageChunk,
) -> (
    ImageUploadHeader,
    futures::stream::Iter<std::vec::IntoIter<Result<ImageChunk, Status>>>,
) {
    header.resume_offset = chunk.offset;
    (header, futures::stream::iter(vec![Ok(chunk)]))
}
