//! The shared image pipeline on a real database (SQLite and PostgreSQL) and a real blob store:
//! uploads in one go and resumed, every refusal, expiry of abandoned sessions, downloads and
//! thumbnails. (Through the gateway, the services' own tests repeat the user-facing paths.)

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use telehealth_images::{
    BlobStore, ImageError, ImageStore, TargetRef, UploadTarget, format::fixtures, session_key,
};
use telehealth_kit::{
    ErrorCode, Part, Settings,
    config::ImageSettings,
    db::Migrations,
    error::ApiError,
    identity::{Identity, Role},
    testing::{TestBlobs, TestDatabase},
};
use telehealth_proto::v1::{
    BodyRegion, BodySite, ImageChunk, ImageContentType, ImageInfo, ImageKind, ImageUploadHeader,
    ImageUploadState, StrippedMetadata,
};
use tonic::Status;

static NOTES_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("tests/fixtures/migrations/sqlite");
static NOTES_POSTGRES: sqlx::migrate::Migrator =
    sqlx::migrate!("tests/fixtures/migrations/postgres");

const ACCEPTED: &[ImageKind] = &[ImageKind::Dermatoscopy, ImageKind::Overview];

/// A target that admits everything, or refuses everything.
struct Request {
    id: &'static str,
    refuse: bool,
}

impl UploadTarget for Request {
    fn target(&self) -> TargetRef {
        TargetRef {
            kind: "request",
            id: self.id.to_owned(),
        }
    }

    fn admit<'a>(
        &'a self,
        _conn: &'a mut AnyConnection,
        _image: &'a ImageInfo,
    ) -> futures::future::BoxFuture<'a, Result<(), ImageError>> {
        Box::pin(async move {
            if self.refuse {
                return Err(ImageError::Target {
                    code: ErrorCode::FailedPrecondition,
                    message: "request is no longer a draft".into(),
                });
            }
            Ok(())
        })
    }
}

const REQUEST: Request = Request {
    id: "req-1",
    refuse: false,
};

fn doctor(subject: &str) -> Identity {
    Identity {
        subject: subject.into(),
        roles: vec![Role::Doctor],
        org: "cds-gueret".into(),
        specialty: None,
        cert_thumbprint: "thumb".into(),
    }
}

struct Fixture {
    store: ImageStore,
    _blobs: TestBlobs,
    test_db: TestDatabase,
}

/// Every database backend with a local folder, and SQLite with the S3 store.
async fn fixtures_with(settings: ImageSettings) -> Vec<Fixture> {
    let mut pairs: Vec<(TestDatabase, TestBlobs)> = Vec::new();
    for test_db in TestDatabase::each_backend().await {
        pairs.push((test_db, TestBlobs::local()));
    }
    if let Some(s3) = TestBlobs::s3() {
        pairs.push((TestDatabase::sqlite().await, s3));
    }
    let mut all = Vec::new();
    for (test_db, blobs) in pairs {
        test_db
            .db
            .migrate(&Migrations {
                sqlite: &NOTES_SQLITE,
                postgres: &NOTES_POSTGRES,
            })
            .await
            .expect("migrations apply");
        let config = Settings {
            blobs: blobs.settings.clone(),
            ..Settings::default()
        };
        let store = BlobStore::open(&config, Part::Expertise).expect("blob store opens");
        all.push(Fixture {
            store: ImageStore::new(test_db.db.clone(), store, settings.clone()),
            _blobs: blobs,
            test_db,
        });
    }
    all
}

async fn fixtures() -> Vec<Fixture> {
    fixtures_with(ImageSettings::default()).await
}

fn header(session: &str, file: &[u8]) -> ImageUploadHeader {
    ImageUploadHeader {
        upload_session_id: session.into(),
        resume_offset: 0,
        total_size_bytes: file.len() as i64,
        declared_kind: ImageKind::Dermatoscopy.into(),
        body_site: Some(BodySite {
            region: BodyRegion::LowerBack.into(),
            ..BodySite::default()
        }),
        client_sha256_hex: sha256(file),
        caption: "lésion dorsale".into(),
        captured_at: None,
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `file[from..to]` as contract chunks of `size` bytes.
fn chunks(file: &[u8], from: usize, to: usize, size: usize) -> Vec<Result<ImageChunk, Status>> {
    file[from..to]
        .chunks(size)
        .enumerate()
        .map(|(i, data)| {
            Ok(ImageChunk {
                offset: (from + i * size) as i64,
                data: data.to_vec(),
            })
        })
        .collect()
}

fn stream(
    items: Vec<Result<ImageChunk, Status>>,
) -> impl Stream<Item = Result<ImageChunk, Status>> + Unpin + Send {
    futures::stream::iter(items)
}

fn session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Where the parts of `caller`'s session `sid` on [`REQUEST`] are staged.
fn staged(caller: &Identity, sid: &str) -> String {
    format!("uploads/{}", session_key(caller, &REQUEST.target(), sid))
}

async fn download_all(store: &ImageStore, image_id: &str, offset: i64) -> Vec<u8> {
    let target = REQUEST.target();
    let image = store.image(&target, image_id).await.expect("image found");
    let mut chunks = Box::pin(
        store
            .download(&image, offset)
            .await
            .expect("download starts"),
    );
    let mut bytes = Vec::new();
    let mut expected = offset;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.expect("chunk");
        assert_eq!(chunk.offset, expected, "chunks are in order");
        assert!(chunk.data.len() <= 1024 * 1024, "chunks are at most 1 MiB");
        expected += chunk.data.len() as i64;
        bytes.extend_from_slice(&chunk.data);
    }
    bytes
}

#[tokio::test]
async fn jpeg_upload_strips_identifying_metadata_without_touching_the_image_data() {
    let original = fixtures::jpeg_with_identifying_metadata(640, 480);
    for fx in fixtures().await {
        let sid = session_id();
        let result = fx
            .store
            .upload(
                &doctor("dr-a"),
                &REQUEST,
                header(&sid, &original),
                ACCEPTED,
                stream(chunks(&original, 0, original.len(), 7_000)),
            )
            .await
            .unwrap_or_else(|e| panic!("{:?}: upload: {e}", fx.test_db.backend()));
        assert!(!result.already_completed);
        let info = result.image.expect("image info");
        assert_eq!(info.content_type(), ImageContentType::Jpeg);
        assert_eq!((info.width_px, info.height_px), (640, 480));
        assert_eq!(info.exif_orientation, 6, "orientation kept");
        assert_eq!(info.original_sha256_hex, sha256(&original));
        assert_eq!(info.original_size_bytes, original.len() as i64);
        for category in [
            StrippedMetadata::GpsLocation,
            StrippedMetadata::DeviceIdentifiers,
            StrippedMetadata::PersonNames,
            StrippedMetadata::EmbeddedThumbnail,
            StrippedMetadata::MakerNotes,
            StrippedMetadata::Xmp,
            StrippedMetadata::Iptc,
            StrippedMetadata::TextComments,
        ] {
            assert!(
                info.stripped_metadata.contains(&(category as i32)),
                "{category:?} reported stripped: {:?}",
                info.stripped_tags
            );
        }
        assert!(
            info.stripped_tags.iter().any(|t| t == "EXIF:GPSLatitude"),
            "{:?}",
            info.stripped_tags
        );

        let stored = download_all(&fx.store, &info.image_id, 0).await;
        assert_eq!(stored.len() as i64, info.size_bytes);
        assert_eq!(
            sha256(&stored),
            info.sha256_hex,
            "stored hash is what a download returns"
        );
        assert_eq!(
            fixtures::entropy_coded_segments(&stored),
            fixtures::entropy_coded_segments(&original),
            "entropy-coded data byte for byte"
        );
        let tags = fixtures::exif_tags(&stored);
        assert!(
            tags.iter().all(|(ifd, _)| ifd != "GPS"),
            "no GPS IFD left: {tags:?}"
        );
        assert!(
            tags.contains(&("IFD0".to_owned(), 0x0112)),
            "orientation tag kept: {tags:?}"
        );
        // A download resumed in the middle returns the rest.
        let tail = download_all(&fx.store, &info.image_id, 1000).await;
        assert_eq!(tail, stored[1000..]);
        fx.test_db.cleanup().await;
    }
}

#[tokio::test]
async fn png_upload_drops_text_and_exif_location_keeps_idat() {
    let original = fixtures::png_with_identifying_metadata(300, 200);
    for fx in fixtures().await {
        let result = fx
            .store
            .upload(
                &doctor("dr-a"),
                &REQUEST,
                header(&session_id(), &original),
                ACCEPTED,
                stream(chunks(&original, 0, original.len(), 1024)),
            )
            .await
            .expect("png upload");
        let info = result.image.expect("info");
        assert_eq!(info.content_type(), ImageContentType::Png);
        assert_eq!(info.exif_orientation, 3);
        assert!(
            info.stripped_metadata
                .contains(&(StrippedMetadata::GpsLocation as i32))
        );
        assert!(
            info.stripped_metadata
                .contains(&(StrippedMetadata::TextComments as i32))
        );
        let stored = download_all(&fx.store, &info.image_id, 0).await;
        assert_eq!(
            fixtures::idat_payload(&stored),
            fixtures::idat_payload(&original)
        );
        let chunk_types: Vec<[u8; 4]> = fixtures::png_chunks(&stored)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        for removed in [b"tEXt", b"zTXt", b"iTXt"] {
            assert!(
                !chunk_types.contains(removed),
                "{} removed",
                String::from_utf8_lossy(removed)
            );
        }
        fx.test_db.cleanup().await;
    }
}

#[tokio::test]
async fn an_interrupted_upload_resumes_from_the_acknowledged_offset() {
    // Parts of 64 KiB so the break leaves several parts stored.
    let settings = ImageSettings {
        part_size_bytes: 64 * 1024,
        ..ImageSettings::default()
    };
    let original = fixtures::jpeg_with_identifying_metadata(1600, 1200);
    assert!(original.len() > 200_000, "a file of several parts");
    for fx in fixtures_with(settings.clone()).await {
        let sid = session_id();
        let caller = doctor("dr-a");
        let target = REQUEST.target();
        // The connection breaks after 150,000 bytes.
        let mut first = chunks(&original, 0, 150_000, 10_000);
        first.push(Err(Status::unavailable("connection reset")));
        let broken = fx
            .store
            .upload(
                &caller,
                &REQUEST,
                header(&sid, &original),
                ACCEPTED,
                stream(first),
            )
            .await
            .expect_err("a broken stream does not complete");
        assert_eq!(broken.code(), ErrorCode::Aborted);

        let status = fx
            .store
            .upload_status(&caller, &target, &sid)
            .await
            .expect("status");
        assert_eq!(status.state(), ImageUploadState::InProgress);
        assert_eq!(status.acknowledged_offset, 150_000, "what arrived was kept");
        assert!(status.expires_at.is_some());
        // Nobody else may see it.
        let other = fx.store.upload_status(&doctor("dr-b"), &target, &sid).await;
        assert!(matches!(other, Err(ImageError::SessionNotFound)));

        // Resuming from the wrong offset is refused with the right one in the message.
        let mut wrong = header(&sid, &original);
        wrong.resume_offset = 100_000;
        let error = fx
            .store
            .upload(
                &caller,
                &REQUEST,
                wrong,
                ACCEPTED,
                stream(chunks(&original, 100_000, original.len(), 10_000)),
            )
            .await
            .expect_err("wrong offset");
        assert_eq!(error.code(), ErrorCode::FailedPrecondition);
        assert!(error.to_string().contains("150000"), "{error}");

        // A different header is refused.
        let mut changed = header(&sid, &original);
        changed.resume_offset = 150_000;
        changed.declared_kind = ImageKind::Overview.into();
        let error = fx
            .store
            .upload(&caller, &REQUEST, changed, ACCEPTED, stream(vec![]))
            .await
            .expect_err("changed header");
        assert!(
            matches!(error, ImageError::HeaderChanged("declared_kind")),
            "{error}"
        );

        // A clean close before the end is "incomplete", still resumable.
        let mut resume = header(&sid, &original);
        resume.resume_offset = 150_000;
        let error = fx
            .store
            .upload(
                &caller,
                &REQUEST,
                resume.clone(),
                ACCEPTED,
                stream(chunks(&original, 150_000, 180_000, 10_000)),
            )
            .await
            .expect_err("incomplete");
        assert!(
            matches!(
                error,
                ImageError::Incomplete {
                    acknowledged: 180_000,
                    ..
                }
            ),
            "{error}"
        );

        resume.resume_offset = 180_000;
        let result = fx
            .store
            .upload(
                &caller,
                &REQUEST,
                resume.clone(),
                ACCEPTED,
                stream(chunks(&original, 180_000, original.len(), 10_000)),
            )
            .await
            .expect("resumed upload completes");
        let info = result.image.expect("info");
        assert_eq!(
            info.original_sha256_hex,
            sha256(&original),
            "the right SHA-256"
        );
        let stored = download_all(&fx.store, &info.image_id, 0).await;
        assert_eq!(
            fixtures::entropy_coded_segments(&stored),
            fixtures::entropy_coded_segments(&original)
        );

        // Sending it again (the response was lost) repeats the result without storing anything.
        let again = fx
            .store
            .upload(&caller, &REQUEST, resume, ACCEPTED, stream(vec![]))
            .await
            .expect("retry of a completed upload");
        assert!(again.already_completed);
        assert_eq!(again.image.expect("info").image_id, info.image_id);
        let status = fx
            .store
            .upload_status(&caller, &target, &sid)
            .await
            .expect("status");
        assert_eq!(status.state(), ImageUploadState::Completed);

        // The staged parts are deleted once the image is stored.
        fx.store.sweep().await.expect("sweep");
        assert!(
            !fx.store
                .blobs()
                .any_under(&staged(&caller, &sid))
                .await
                .expect("list")
        );
        fx.test_db.cleanup().await;
    }
}

/// Polls the acknowledged offset of `caller`'s session `sid` until `wanted` holds (10 s at most).
async fn wait_for_acknowledged(
    fx: &Fixture,
    caller: &Identity,
    sid: &str,
    wanted: impl Fn(i64) -> bool,
    what: &str,
) {
    let mut last = None;
    for _ in 0..200 {
        last = fx
            .store
            .upload_status(caller, &REQUEST.target(), sid)
            .await
            .ok()
            .map(|s| s.acknowledged_offset);
        if last.is_some_and(&wanted) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("acknowledged offset {last:?}: expected {what}");
}

#[tokio::test]
async fn a_call_dropped_mid_part_still_stores_every_byte_received() {
    // Parts of 64 KiB (stored once at least that much is in); 100,000 bytes arrive, the second
    // part is incomplete when the call is dropped.
    let settings = ImageSettings {
        part_size_bytes: 64 * 1024,
        ..ImageSettings::default()
    };
    let original = fixtures::jpeg_with_identifying_metadata(1600, 1200);
    let received = 100_000;
    for (i, fx) in fixtures_with(settings).await.into_iter().enumerate() {
        let caller = doctor("dr-a");
        let sid = session_id();
        let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<ImageChunk, Status>>();
        for chunk in chunks(&original, 0, received, 10_000) {
            sender.unbounded_send(chunk).expect("send");
        }
        let store = fx.store.clone();
        let (who, first) = (caller.clone(), header(&sid, &original));
        let call = tokio::spawn(async move {
            store
                .upload(&who, &REQUEST, first, ACCEPTED, receiver)
                .await
        });
        // The first part is stored once its bytes are in: the rest of what was sent is in too.
        wait_for_acknowledged(&fx, &caller, &sid, |a| a >= 64 * 1024, "a first part").await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // The connection breaks: hyper drops the call's handler, then the stream fails. (On the
        // first backend, the stream just stays silent: the grace period ends the wait.)
        call.abort();
        if i > 0 {
            sender
                .unbounded_send(Err(Status::unknown("h2 protocol error: stream reset")))
                .expect("send");
        }
        wait_for_acknowledged(
            &fx,
            &caller,
            &sid,
            |a| a == received as i64,
            "every byte received",
        )
        .await;
        drop(sender);

        // Resuming at exactly that byte gives the same image as an upload in one go.
        let mut resume = header(&sid, &original);
        resume.resume_offset = received as i64;
        let resumed = fx
            .store
            .upload(
                &caller,
                &REQUEST,
                resume,
                ACCEPTED,
                stream(chunks(&original, received, original.len(), 10_000)),
            )
            .await
            .expect("resumed upload completes")
            .image
            .expect("info");
        let whole = fx
            .store
            .upload(
                &caller,
                &REQUEST,
                header(&session_id(), &original),
                ACCEPTED,
                stream(chunks(&original, 0, original.len(), 10_000)),
            )
            .await
            .expect("upload in one go")
            .image
            .expect("info");
        assert_eq!(resumed.original_sha256_hex, sha256(&original));
        assert_eq!(resumed.sha256_hex, whole.sha256_hex);
        assert_eq!(
            download_all(&fx.store, &resumed.image_id, 0).await,
            download_all(&fx.store, &whole.image_id, 0).await,
            "byte for byte"
        );
        fx.test_db.cleanup().await;
    }
}

#[tokio::test]
async fn an_abandoned_upload_expires_never_appears_and_its_bytes_are_deleted() {
    let settings = ImageSettings {
        part_size_bytes: 64 * 1024,
        session_expiry_seconds: 1,
        ..ImageSettings::default()
    };
    let original = fixtures::jpeg_plain(800, 600);
    for fx in fixtures_with(settings.clone()).await {
        let sid = session_id();
        let caller = doctor("dr-a");
        let target = REQUEST.target();
        let half = original.len() / 2;
        let error = fx
            .store
            .upload(
                &caller,
                &REQUEST,
                header(&sid, &original),
                ACCEPTED,
                stream(chunks(&original, 0, half, 4096)),
            )
            .await
            .expect_err("incomplete");
        assert_eq!(error.code(), ErrorCode::FailedPrecondition);
        assert!(
            fx.store
                .blobs()
                .any_under(&staged(&caller, &sid))
                .await
                .expect("list")
        );

        tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
        let report = fx.store.sweep().await.expect("sweep");
        assert_eq!(report.sessions_expired, 1);
        assert!(
            !fx.store
                .blobs()
                .any_under(&staged(&caller, &sid))
                .await
                .expect("list"),
            "bytes deleted"
        );
        assert!(matches!(
            fx.store.upload_status(&caller, &target, &sid).await,
            Err(ImageError::SessionNotFound)
        ));
        let mut conn = fx.test_db.db.pool().acquire().await.expect("conn");
        assert!(
            ImageStore::images_of(&mut conn, &target)
                .await
                .expect("list")
                .is_empty(),
            "never an attachment"
        );
        drop(conn);
        // Resuming it is NOT_FOUND.
        let mut resume = header(&sid, &original);
        resume.resume_offset = half as i64;
        let error = fx
            .store
            .upload(
                &caller,
                &REQUEST,
                resume,
                ACCEPTED,
                stream(chunks(&original, half, original.len(), 4096)),
            )
            .await
            .expect_err("expired");
        assert_eq!(error.code(), ErrorCode::NotFound);
        fx.test_db.cleanup().await;
    }
}

/// Uploads `file` in one stream and expects INVALID_ARGUMENT with `needle` in the message, and
/// nothing kept.
async fn assert_refused(fx: &Fixture, file: &[u8], header: ImageUploadHeader, needle: &str) {
    let caller = doctor("dr-a");
    let sid = header.upload_session_id.clone();
    let error = fx
        .store
        .upload(
            &caller,
            &REQUEST,
            header,
            ACCEPTED,
            stream(chunks(file, 0, file.len(), 64 * 1024)),
        )
        .await
        .expect_err(needle);
    assert_eq!(
        error.code(),
        ErrorCode::InvalidArgument,
        "{needle}: {error}"
    );
    assert!(
        error.to_string().to_lowercase().contains(needle),
        "`{needle}` in the message: {error}"
    );
    fx.store.sweep().await.expect("sweep");
    assert!(matches!(
        fx.store
            .upload_status(&caller, &REQUEST.target(), &sid)
            .await,
        Err(ImageError::SessionNotFound) | Err(ImageError::InvalidArgument(_))
    ));
    assert!(
        !fx.store
            .blobs()
            .any_under(&staged(&caller, &sid))
            .await
            .expect("list"),
        "{needle}: no bytes kept"
    );
    assert!(
        !fx.store.blobs().any_under("images").await.expect("list"),
        "{needle}: no image stored"
    );
    let mut conn = fx.test_db.db.pool().acquire().await.expect("conn");
    assert!(
        ImageStore::images_of(&mut conn, &REQUEST.target())
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_message_and_nothing_is_kept() {
    let settings = ImageSettings {
        max_size_bytes: 2 * 1024 * 1024,
        ..ImageSettings::default()
    };
    let jpeg = fixtures::jpeg_with_identifying_metadata(640, 480);
    let png = fixtures::png_plain(64, 64);
    for fx in fixtures_with(settings).await {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"%PDF-1.7 this is a document, not an image".repeat(10),
                "not an image",
            ),
            (jpeg[..jpeg.len() - 500].to_vec(), "truncated"),
            (png[..png.len() - 20].to_vec(), "truncated"),
            (fixtures::polyglot_jpeg_zip(), "after the end"),
            (
                [png.clone(), b"PK\x03\x04 hidden archive".to_vec()].concat(),
                "after the end",
            ),
            (fixtures::jpeg_bomb(65_000, 65_000), "image too large"),
            (fixtures::png_bomb(100_000, 100_000), "image too large"),
            (fixtures::dicom_header(), "dicom"),
        ];
        for (file, needle) in cases {
            let h = header(&session_id(), &file);
            assert_refused(&fx, &file, h, needle).await;
        }
        // Wrong checksum.
        let mut h = header(&session_id(), &jpeg);
        h.client_sha256_hex = "0".repeat(64);
        assert_refused(&fx, &jpeg, h, "checksum mismatch").await;
        // Declared over the limit.
        let mut h = header(&session_id(), &jpeg);
        h.total_size_bytes = 3 * 1024 * 1024;
        let error = fx
            .store
            .upload(&doctor("dr-a"), &REQUEST, h, ACCEPTED, stream(vec![]))
            .await
            .expect_err("too big");
        assert!(error.to_string().contains("size limit"), "{error}");
        // More bytes than declared.
        let mut h = header(&session_id(), &jpeg);
        h.total_size_bytes = 1000;
        h.client_sha256_hex.clear();
        assert_refused(&fx, &jpeg, h, "more bytes than declared").await;
        // A chunk over 1 MiB, and chunks out of order.
        let big = vec![0xFFu8; 1024 * 1024 + 1];
        let h = header(&session_id(), &big);
        let error = fx
            .store
            .upload(
                &doctor("dr-a"),
                &REQUEST,
                h,
                ACCEPTED,
                stream(vec![Ok(ImageChunk {
                    offset: 0,
                    data: big.clone(),
                })]),
            )
            .await
            .expect_err("chunk too big");
        assert!(error.to_string().contains("1 MiB"), "{error}");
        let h = header(&session_id(), &jpeg);
        let mut swapped = chunks(&jpeg, 0, jpeg.len(), 4096);
        swapped.swap(1, 2);
        let error = fx
            .store
            .upload(&doctor("dr-a"), &REQUEST, h, ACCEPTED, stream(swapped))
            .await
            .expect_err("out of order");
        assert!(error.to_string().contains("out of order"), "{error}");
        // A kind this service does not take.
        let mut h = header(&session_id(), &jpeg);
        h.declared_kind = ImageKind::WoundPhoto.into();
        let error = fx
            .store
            .upload(&doctor("dr-a"), &REQUEST, h, ACCEPTED, stream(vec![]))
            .await
            .expect_err("kind");
        assert!(error.to_string().contains("not accepted"), "{error}");
        fx.test_db.cleanup().await;
    }
}

#[tokio::test]
async fn another_users_session_id_finds_nothing_and_a_refusing_target_keeps_nothing() {
    let original = fixtures::jpeg_plain(320, 240);
    for fx in fixtures().await {
        let refusing = Request {
            id: "req-3",
            refuse: true,
        };
        let sid = session_id();
        let error = fx
            .store
            .upload(
                &doctor("dr-a"),
                &refusing,
                header(&sid, &original),
                ACCEPTED,
                stream(chunks(&original, 0, original.len(), 4096)),
            )
            .await
            .expect_err("refused by the target");
        assert_eq!(error.code(), ErrorCode::FailedPrecondition);
        fx.store.sweep().await.expect("sweep");
        assert!(
            !fx.store.blobs().any_under("images").await.expect("list"),
            "the sanitized copy is deleted"
        );
        let mut conn = fx.test_db.db.pool().acquire().await.expect("conn");
        assert!(
            ImageStore::images_of(&mut conn, &refusing.target())
                .await
                .expect("list")
                .is_empty()
        );
        drop(conn);

        let sid = session_id();
        let half = original.len() / 2;
        let _ = fx
            .store
            .upload(
                &doctor("dr-a"),
                &REQUEST,
                header(&sid, &original),
                ACCEPTED,
                stream(chunks(&original, 0, half, 4096)),
            )
            .await;
        let mut resume = header(&sid, &original);
        resume.resume_offset = half as i64;
        // What an unknown session gets, word for word.
        let mut unknown = header(&session_id(), &original);
        unknown.resume_offset = half as i64;
        let missing = fx
            .store
            .upload(&doctor("dr-b"), &REQUEST, unknown, ACCEPTED, stream(vec![]))
            .await
            .expect_err("an unknown session");
        assert_eq!(missing.code(), ErrorCode::NotFound);
        let other_request = Request {
            id: "req-2",
            refuse: false,
        };
        let mut in_another_org = doctor("dr-a");
        in_another_org.org = "cds-aubusson".into();
        let probes: [(&str, Identity, &Request); 3] = [
            ("another user", doctor("dr-b"), &REQUEST),
            ("the same subject in another org", in_another_org, &REQUEST),
            ("another target", doctor("dr-a"), &other_request),
        ];
        for (who, caller, target) in probes {
            let error = fx
                .store
                .upload(&caller, target, resume.clone(), ACCEPTED, stream(vec![]))
                .await
                .expect_err(who);
            assert_eq!(error.code(), ErrorCode::NotFound, "{who}");
            assert_eq!(error.to_string(), missing.to_string(), "{who}");
            let status = fx
                .store
                .upload_status(&caller, &target.target(), &sid)
                .await;
            assert!(
                matches!(status, Err(ImageError::SessionNotFound)),
                "{who}: {status:?}"
            );
        }
        // Another user choosing the same id starts a session of his own...
        let theirs = fx
            .store
            .upload(
                &doctor("dr-b"),
                &REQUEST,
                header(&sid, &original),
                ACCEPTED,
                stream(chunks(&original, 0, original.len(), 4096)),
            )
            .await
            .expect("the same id, another user: an upload of its own");
        assert_eq!(theirs.upload_session_id, sid);
        assert!(!theirs.already_completed);
        // ...and the first user's session is untouched: it resumes and completes.
        let mine = fx
            .store
            .upload(
                &doctor("dr-a"),
                &REQUEST,
                resume,
                ACCEPTED,
                stream(chunks(&original, half, original.len(), 4096)),
            )
            .await
            .expect("the owner resumes");
        assert_eq!(mine.upload_session_id, sid);
        assert_ne!(
            mine.image.expect("image").image_id,
            theirs.image.expect("image").image_id
        );

        fx.test_db.cleanup().await;
    }
}

#[tokio::test]
async fn thumbnails_are_small_jpegs_with_orientation_applied_and_detach_deletes_everything() {
    let original = fixtures::jpeg_with_identifying_metadata(600, 400);
    for fx in fixtures().await {
        let result = fx
            .store
            .upload(
                &doctor("dr-a"),
                &REQUEST,
                header(&session_id(), &original),
                ACCEPTED,
                stream(chunks(&original, 0, original.len(), 65_536)),
            )
            .await
            .expect("upload");
        let info = result.image.expect("info");
        let target = REQUEST.target();
        let image = fx
            .store
            .image(&target, &info.image_id)
            .await
            .expect("image");
        let thumbnail = fx.store.thumbnail(&image, 256).await.expect("thumbnail");
        // Orientation 6 (rotate 90°): the 600x400 landscape becomes a portrait.
        assert_eq!((thumbnail.width_px, thumbnail.height_px), (171, 256));
        assert!(thumbnail.jpeg_data.starts_with(&[0xFF, 0xD8]));
        assert!(thumbnail.jpeg_data.len() < 256 * 1024);
        let cached = fx
            .store
            .thumbnail(&image, 256)
            .await
            .expect("cached thumbnail");
        assert_eq!(cached, thumbnail);
        assert_eq!(
            fx.store
                .thumbnail(&image, 16)
                .await
                .expect_err("too small")
                .code(),
            ErrorCode::InvalidArgument
        );
        // Another target does not see the image.
        let other = TargetRef {
            kind: "request",
            id: "req-other".into(),
        };
        assert!(matches!(
            fx.store.image(&other, &info.image_id).await,
            Err(ImageError::ImageNotFound)
        ));

        let mut conn = fx.test_db.db.pool().acquire().await.expect("conn");
        assert!(
            ImageStore::detach(&mut conn, &target, &info.image_id)
                .await
                .expect("detach")
        );
        drop(conn);
        fx.store.sweep().await.expect("sweep");
        assert!(!fx.store.blobs().any_under("images").await.expect("list"));
        assert!(
            !fx.store
                .blobs()
                .any_under("thumbnails")
                .await
                .expect("list")
        );
        fx.test_db.cleanup().await;
    }
}

#[tokio::test]
async fn a_refused_session_id_is_not_reused_while_its_bytes_are_deleted() {
    let jpeg = fixtures::jpeg_plain(320, 240);
    for fx in fixtures().await {
        let sid = session_id();
        let mut bad = header(&sid, &jpeg);
        bad.client_sha256_hex = "0".repeat(64);
        let error = fx
            .store
            .upload(
                &doctor("dr-a"),
                &REQUEST,
                bad,
                ACCEPTED,
                stream(chunks(&jpeg, 0, jpeg.len(), 4096)),
            )
            .await
            .expect_err("checksum mismatch");
        assert_eq!(error.code(), ErrorCode::InvalidArgument);
        // The same id again, even with the right checksum: choose a new id.
        let again = fx
            .store
            .upload(
                &doctor("dr-a"),
                &REQUEST,
                header(&sid, &jpeg),
                ACCEPTED,
                stream(chunks(&jpeg, 0, jpeg.len(), 4096)),
            )
            .await
            .expect_err("a refused id is spent");
        assert_eq!(again.code(), ErrorCode::AlreadyExists, "{again}");
        // The tombstone is the owner's only: to anyone else the id is new.
        fx.store
            .upload(
                &doctor("dr-b"),
                &REQUEST,
                header(&sid, &jpeg),
                ACCEPTED,
                stream(chunks(&jpeg, 0, jpeg.len(), 4096)),
            )
            .await
            .expect("another user's upload with that id");
        fx.test_db.cleanup().await;
    }
}

#[tokio::test]
async fn uploads_beyond_the_per_server_limit_are_refused_as_resource_exhausted() {
    let settings = ImageSettings {
        max_concurrent_uploads: 1,
        ..ImageSettings::default()
    };
    let jpeg = fixtures::jpeg_plain(320, 240);
    let fx = fixtures_with(settings).await.remove(0);
    // The first upload waits for chunks that have not come yet.
    let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<ImageChunk, Status>>();
    let store = fx.store.clone();
    let first_header = header(&session_id(), &jpeg);
    let first = tokio::spawn(async move {
        store
            .upload(&doctor("dr-a"), &REQUEST, first_header, ACCEPTED, receiver)
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let error = fx
        .store
        .upload(
            &doctor("dr-b"),
            &REQUEST,
            header(&session_id(), &jpeg),
            ACCEPTED,
            stream(vec![]),
        )
        .await
        .expect_err("over the limit");
    assert_eq!(error.code(), ErrorCode::ResourceExhausted, "{error}");
    for chunk in chunks(&jpeg, 0, jpeg.len(), 4096) {
        sender.unbounded_send(chunk).expect("send");
    }
    drop(sender);
    first
        .await
        .expect("task")
        .expect("the first upload completes");
    fx.test_db.cleanup().await;
}

#[tokio::test]
async fn a_check_of_every_image_names_each_missing_or_altered_one() {
    let photo = fixtures::jpeg_with_identifying_metadata(320, 240);
    for fx in fixtures().await {
        let mut ids = Vec::new();
        for _ in 0..3 {
            let result = fx
                .store
                .upload(
                    &doctor("dr-a"),
                    &REQUEST,
                    header(&session_id(), &photo),
                    ACCEPTED,
                    stream(chunks(&photo, 0, photo.len(), 64 * 1024)),
                )
                .await
                .expect("upload");
            ids.push(result.image.expect("image").image_id);
        }
        let intact = fx.store.verify_all().await.expect("check");
        assert_eq!(intact.images, 3, "{}", fx._blobs.name);
        assert!(intact.problems.is_empty(), "{:?}", intact.problems);
        assert!(intact.bytes > 0);

        // One image's bytes lost, another's replaced by other bytes of the same length.
        let blobs = fx.store.blobs();
        blobs
            .delete(&format!("images/{}", ids[0]))
            .await
            .expect("delete");
        let key = format!("images/{}", ids[1]);
        let mut altered = blobs
            .read_all(&key)
            .await
            .expect("read")
            .expect("bytes")
            .to_vec();
        let middle = altered.len() / 2;
        altered[middle] ^= 0xff;
        blobs.put(&key, altered.into()).await.expect("put");

        let damaged = fx.store.verify_all().await.expect("check");
        assert_eq!(damaged.images, 3);
        assert_eq!(damaged.problems.len(), 2, "{:?}", damaged.problems);
        assert!(
            damaged.problems[..]
                .iter()
                .any(|p| p.contains(&ids[0]) && p.contains("missing")),
            "{:?}",
            damaged.problems
        );
        assert!(
            damaged
                .problems
                .iter()
                .any(|p| p.contains(&ids[1]) && p.contains("do not match")),
            "{:?}",
            damaged.problems
        );
        assert!(damaged.problems.iter().all(|p| !p.contains(&ids[2])));
        fx.test_db.cleanup().await;
    }
}
