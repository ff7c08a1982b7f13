//! The shared image pipeline as users meet it: through the gateway (real mTLS and tokens) into
//! the tele-expertise service's `AttachImage`, `GetImageUploadStatus`, `DownloadImage` and
//! `GetImageThumbnail`, on SQLite and PostgreSQL. The pipeline's own cases (every refusal on
//! both databases and on S3) are in `services/kit/tests/images.rs`; here each user-facing path
//! is checked once end to end.

use std::{net::SocketAddr, time::Duration};

use sha2::{Digest, Sha256};
use telehealth_images::{TargetRef, format::fixtures, session_key};
use telehealth_kit::identity::Identity;
use telehealth_proto::v1::{
    self as pb, attach_image_request::Part as Upload, download_image_response::Part as Download,
    expertise_service_client::ExpertiseServiceClient,
};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

use telehealth_testkit::suite::{Expertise, Person, Suite, backends};

const CENTRE: &str = "cds-gueret";

fn doctor() -> Person {
    Person::doctor("dr-martin", CENTRE)
}

/// A client whose one connection to the gateway goes through `address` (e.g. a [`Link`], which
/// takes one connection: the person is enrolled through the gateway first).
async fn expertise_via(suite: &Suite, address: SocketAddr, person: &Person) -> Expertise {
    suite.enrol(person).await;
    ExpertiseServiceClient::new(suite.unenrolled(address, person).await)
}

/// A TCP link between one client and the gateway that the test can cut, as a phone losing its
/// network does: both sockets close at once, with no HTTP/2 or gRPC goodbye, so the gateway
/// (and behind it the service) sees the call die mid-stream rather than end.
struct Link {
    address: SocketAddr,
    cut: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn to(gateway: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (cut, cut_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let (mut client, _) = listener.accept().await.expect("accept");
            let mut server = TcpStream::connect(gateway).await.expect("connect");
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut_rx => {}
            }
        });
        Link { address, cut, task }
    }

    /// Cuts the link: both sockets are dropped.
    async fn cut(self) {
        let _ = self.cut.send(());
        self.task.await.expect("link task");
    }
}

/// A new draft request of the doctor, to the first configured target.
async fn draft(client: &mut Expertise) -> String {
    let target = client
        .list_targets(pb::ListTargetsRequest::default())
        .await
        .expect("targets")
        .into_inner()
        .targets
        .into_iter()
        .next()
        .expect("a configured target");
    client
        .create_draft(pb::CreateDraftRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            content: Some(pb::ExpertiseRequestContent {
                target_org_id: target.org_id,
                specialty: target.specialty,
                clinical_question: "Lésion pigmentée du dos, évolutive : mélanome ?".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("draft")
        .into_inner()
        .request
        .expect("request")
        .request_id
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header(
    request_id: &str,
    session: &str,
    file: &[u8],
    resume_offset: usize,
) -> pb::AttachImageRequest {
    pb::AttachImageRequest {
        part: Some(Upload::Header(pb::AttachImageHeader {
            request_id: request_id.to_owned(),
            image: Some(pb::ImageUploadHeader {
                upload_session_id: session.to_owned(),
                resume_offset: resume_offset as i64,
                total_size_bytes: file.len() as i64,
                declared_kind: pb::ImageKind::Dermatoscopy.into(),
                body_site: Some(pb::BodySite {
                    region: pb::BodyRegion::UpperBack.into(),
                    ..Default::default()
                }),
                client_sha256_hex: sha256(file),
                caption: String::new(),
                captured_at: None,
            }),
        })),
    }
}

fn chunk_messages(file: &[u8], from: usize, to: usize) -> Vec<pb::AttachImageRequest> {
    const CHUNK: usize = 64 * 1024;
    (from..to)
        .step_by(CHUNK)
        .map(|offset| pb::AttachImageRequest {
            part: Some(Upload::Chunk(pb::ImageChunk {
                offset: offset as i64,
                data: file[offset..to.min(offset + CHUNK)].to_vec(),
            })),
        })
        .collect()
}

async fn upload(
    client: &mut Expertise,
    request_id: &str,
    file: &[u8],
) -> Result<pb::ImageInfo, tonic::Status> {
    let session = uuid::Uuid::new_v4().to_string();
    let mut messages = vec![header(request_id, &session, file, 0)];
    messages.extend(chunk_messages(file, 0, file.len()));
    let response = client
        .attach_image(futures::stream::iter(messages))
        .await?
        .into_inner();
    Ok(response.result.and_then(|r| r.image).expect("image info"))
}

async fn download(
    client: &mut Expertise,
    request_id: &str,
    image_id: &str,
) -> (pb::ImageInfo, Vec<u8>) {
    let mut stream = client
        .download_image(pb::DownloadImageRequest {
            request_id: request_id.to_owned(),
            image_id: image_id.to_owned(),
            offset: 0,
        })
        .await
        .expect("download")
        .into_inner();
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await.expect("download message") {
        match message.part {
            Some(Download::Image(image)) => info = Some(image),
            Some(Download::Chunk(chunk)) => {
                assert_eq!(chunk.offset as usize, bytes.len(), "chunks in order");
                bytes.extend_from_slice(&chunk.data);
            }
            None => panic!("empty download message"),
        }
    }
    (info.expect("the image info comes first"), bytes)
}

async fn images_of(client: &mut Expertise, request_id: &str) -> Vec<pb::ImageInfo> {
    client
        .get_request(pb::GetRequestRequest {
            request_id: request_id.to_owned(),
        })
        .await
        .expect("get request")
        .into_inner()
        .request
        .expect("request")
        .images
}

#[tokio::test]
async fn a_photo_with_gps_loses_its_identifying_metadata_but_not_a_byte_of_image_data() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let mut client = suite.expertise(&doctor()).await;
        let request_id = draft(&mut client).await;

        let jpeg = fixtures::jpeg_with_identifying_metadata(800, 600);
        assert!(
            fixtures::exif_tags(&jpeg)
                .iter()
                .any(|(ifd, _)| ifd == "GPS"),
            "the fixture carries GPS"
        );
        let info = upload(&mut client, &request_id, &jpeg)
            .await
            .expect("jpeg upload");
        assert_eq!(info.content_type(), pb::ImageContentType::Jpeg);
        assert_eq!(info.original_sha256_hex, sha256(&jpeg));
        assert_eq!(info.exif_orientation, 6);
        assert!(
            info.stripped_metadata
                .contains(&(pb::StrippedMetadata::GpsLocation as i32))
        );
        let (downloaded_info, stored) = download(&mut client, &request_id, &info.image_id).await;
        assert_eq!(downloaded_info.image_id, info.image_id);
        assert_eq!(sha256(&stored), info.sha256_hex);
        let tags = fixtures::exif_tags(&stored);
        assert!(
            tags.iter().all(|(ifd, _)| ifd != "GPS"),
            "{backend:?}: GPS gone: {tags:?}"
        );
        for (ifd, tag, name) in [
            ("IFD0", 0x013B, "Artist"),
            ("IFD0", 0x010F, "Make"),
            ("Exif", 0xA431, "BodySerialNumber"),
            ("Exif", 0x927C, "MakerNote"),
        ] {
            assert!(
                !tags.contains(&(ifd.to_owned(), tag)),
                "{name} removed: {tags:?}"
            );
        }
        assert!(
            tags.contains(&("IFD0".to_owned(), 0x0112)),
            "orientation kept"
        );
        assert_eq!(
            fixtures::entropy_coded_segments(&stored),
            fixtures::entropy_coded_segments(&jpeg),
            "entropy-coded data identical"
        );

        let png = fixtures::png_with_identifying_metadata(320, 240);
        let info = upload(&mut client, &request_id, &png)
            .await
            .expect("png upload");
        assert_eq!(info.content_type(), pb::ImageContentType::Png);
        let (_, stored) = download(&mut client, &request_id, &info.image_id).await;
        assert_eq!(
            fixtures::idat_payload(&stored),
            fixtures::idat_payload(&png),
            "IDAT identical"
        );
        let kinds: Vec<[u8; 4]> = fixtures::png_chunks(&stored)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert!(
            !kinds
                .iter()
                .any(|t| [b"tEXt", b"zTXt", b"iTXt"].contains(&t)),
            "text chunks gone"
        );
        assert!(
            fixtures::exif_tags(&stored)
                .iter()
                .all(|(ifd, _)| ifd != "GPS"),
            "eXIf GPS gone"
        );

        let thumbnail = client
            .get_image_thumbnail(pb::GetImageThumbnailRequest {
                request_id: request_id.clone(),
                image_id: info.image_id.clone(),
                ..Default::default()
            })
            .await
            .expect("thumbnail")
            .into_inner()
            .thumbnail
            .expect("thumbnail");
        assert!(thumbnail.jpeg_data.starts_with(&[0xFF, 0xD8]));
        assert_eq!(images_of(&mut client, &request_id).await.len(), 2);
        suite.stop().await;
    }
}

#[tokio::test]
async fn bad_images_are_refused_with_invalid_argument_and_never_attached() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let mut client = suite.expertise(&doctor()).await;
        let request_id = draft(&mut client).await;
        let jpeg = fixtures::jpeg_plain(400, 300);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "not an image",
                b"MZ\x90\x00 an executable, not a photo".repeat(20),
            ),
            ("truncated", jpeg[..jpeg.len() - 100].to_vec()),
            ("polyglot", fixtures::polyglot_jpeg_zip()),
            ("image bomb", fixtures::jpeg_bomb(60_000, 60_000)),
        ];
        for (what, file) in cases {
            let status = upload(&mut client, &request_id, &file)
                .await
                .expect_err(what);
            assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
            assert!(!status.message().is_empty());
        }
        // Wrong checksum.
        let session = uuid::Uuid::new_v4().to_string();
        let mut first = header(&request_id, &session, &jpeg, 0);
        if let Some(Upload::Header(h)) = &mut first.part {
            h.image.as_mut().expect("image").client_sha256_hex = "ab".repeat(32);
        }
        let mut messages = vec![first];
        messages.extend(chunk_messages(&jpeg, 0, jpeg.len()));
        let status = client
            .attach_image(futures::stream::iter(messages))
            .await
            .expect_err("checksum");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("checksum"), "{status:?}");
        // Over the size limit (declared).
        let mut big = header(&request_id, &uuid::Uuid::new_v4().to_string(), &jpeg, 0);
        if let Some(Upload::Header(h)) = &mut big.part {
            h.image.as_mut().expect("image").total_size_bytes = 51 * 1024 * 1024;
        }
        let status = client
            .attach_image(futures::stream::iter(vec![big]))
            .await
            .expect_err("too big");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            images_of(&mut client, &request_id).await.is_empty(),
            "nothing attached"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn an_upload_cut_mid_part_resumes_from_every_received_byte_and_an_abandoned_one_is_cleaned_up()
 {
    for backend in backends().await {
        let Some(suite) = Suite::start_with(backend, |settings| {
            settings.images.part_size_bytes = 64 * 1024;
            settings.images.session_expiry_seconds = 2;
            settings.images.sweep_interval_seconds = 1;
        })
        .await
        else {
            continue;
        };
        let mut client = suite.expertise(&doctor()).await;
        let request_id = draft(&mut client).await;
        let jpeg = fixtures::jpeg_with_identifying_metadata(1600, 1200);
        let session = uuid::Uuid::new_v4().to_string();
        // Three whole 64 KiB parts and 8 KiB of a fourth.
        const SENT: usize = 200 * 1024;
        assert!(jpeg.len() > SENT + 64 * 1024, "{} bytes", jpeg.len());

        // The uploading client's connection goes through a link the test cuts after 200 KiB,
        // in the middle of a part: the call dies, it does not end.
        let gateway = suite.running.as_ref().expect("running").gateway;
        let link = Link::to(gateway).await;
        let mut cut_client = expertise_via(&suite, link.address, &doctor()).await;
        let (sender, receiver) = tokio::sync::mpsc::channel(8);
        let call = tokio::spawn(async move {
            cut_client
                .attach_image(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
        });
        sender
            .send(header(&request_id, &session, &jpeg, 0))
            .await
            .expect("send");
        for message in chunk_messages(&jpeg, 0, SENT) {
            sender.send(message).await.expect("send");
        }
        // The whole parts are stored as they arrive; the last 8 KiB were sent with them.
        wait_for_progress(&mut client, &request_id, &session, 192 * 1024).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        link.cut().await;
        let broken = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the cut call ends")
            .expect("call task");
        assert!(broken.is_err(), "a cut call does not complete");

        // The service stores the partial part by itself: every byte it received is
        // acknowledged, not only the whole parts.
        let acknowledged = wait_for_progress(&mut client, &request_id, &session, SENT as i64).await;
        assert_eq!(acknowledged, SENT as i64, "{backend:?}: nothing lost");
        drop(sender);
        assert!(
            images_of(&mut client, &request_id).await.is_empty(),
            "a partial upload is not an attachment"
        );

        // Resuming at exactly the acknowledged byte gives the very image an upload in one go
        // gives.
        let resume_at = acknowledged as usize;
        let mut messages = vec![header(&request_id, &session, &jpeg, resume_at)];
        messages.extend(chunk_messages(&jpeg, resume_at, jpeg.len()));
        let result = client
            .attach_image(futures::stream::iter(messages))
            .await
            .expect("resumed upload")
            .into_inner()
            .result
            .expect("result");
        assert_eq!(result.upload_session_id, session);
        let info = result.image.expect("image");
        assert_eq!(
            info.original_sha256_hex,
            sha256(&jpeg),
            "{backend:?}: the right SHA-256"
        );
        let whole = upload(&mut client, &request_id, &jpeg)
            .await
            .expect("upload in one go");
        let (_, resumed_bytes) = download(&mut client, &request_id, &info.image_id).await;
        let (_, whole_bytes) = download(&mut client, &request_id, &whole.image_id).await;
        assert_eq!(info.sha256_hex, whole.sha256_hex);
        assert!(resumed_bytes == whole_bytes, "{backend:?}: byte for byte");
        assert_eq!(images_of(&mut client, &request_id).await.len(), 2);

        // An abandoned upload never appears and expires.
        let abandoned = uuid::Uuid::new_v4().to_string();
        let mut messages = vec![header(&request_id, &abandoned, &jpeg, 0)];
        messages.extend(chunk_messages(&jpeg, 0, 100 * 1024));
        let status = client
            .attach_image(futures::stream::iter(messages))
            .await
            .expect_err("incomplete");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            upload_status(&mut client, &request_id, &abandoned)
                .await
                .is_ok()
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        let gone = upload_status(&mut client, &request_id, &abandoned)
            .await
            .expect_err("expired");
        assert_eq!(gone.code(), Code::NotFound);
        assert_eq!(
            images_of(&mut client, &request_id).await.len(),
            2,
            "never an attachment"
        );
        let staged = suite
            .settings
            .blob_dir()
            .join("expertise")
            .join("uploads")
            .join(session_key(
                &identity(&doctor()),
                &TargetRef {
                    kind: "request",
                    id: request_id.clone(),
                },
                &abandoned,
            ));
        assert!(
            !staged.exists(),
            "{backend:?}: its bytes are deleted ({})",
            staged.display()
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn another_users_upload_session_id_is_answered_exactly_as_an_unknown_one() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let owner = doctor();
        let colleague = Person::doctor("dr-bernard", CENTRE);
        let mut mine = suite.expertise(&owner).await;
        let mut theirs = suite.expertise(&colleague).await;
        let my_request = draft(&mut mine).await;
        let their_request = draft(&mut theirs).await;
        let jpeg = fixtures::jpeg_plain(800, 600);
        let half = jpeg.len() / 2;

        // The owner starts an upload and stops half-way.
        let session = uuid::Uuid::new_v4().to_string();
        let mut messages = vec![header(&my_request, &session, &jpeg, 0)];
        messages.extend(chunk_messages(&jpeg, 0, half));
        let incomplete = mine
            .attach_image(futures::stream::iter(messages))
            .await
            .expect_err("incomplete");
        assert_eq!(incomplete.code(), Code::FailedPrecondition);

        // What an unknown id gets, to compare with.
        let unknown = uuid::Uuid::new_v4().to_string();
        let missing_status = upload_status(&mut theirs, &my_request, &unknown)
            .await
            .expect_err("unknown session");
        let missing_resume = theirs
            .attach_image(futures::stream::iter(vec![header(
                &their_request,
                &unknown,
                &jpeg,
                half,
            )]))
            .await
            .expect_err("unknown session");
        for missing in [&missing_status, &missing_resume] {
            assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        }

        // A colleague who may read the request probes the owner's id: exactly the same answers.
        let status = upload_status(&mut theirs, &my_request, &session)
            .await
            .expect_err("another user's session");
        assert_eq!(
            (status.code(), status.message()),
            (missing_status.code(), missing_status.message()),
            "status of another user's session"
        );
        let resume = theirs
            .attach_image(futures::stream::iter(vec![header(
                &their_request,
                &session,
                &jpeg,
                half,
            )]))
            .await
            .expect_err("another user's session");
        assert_eq!(
            (resume.code(), resume.message()),
            (missing_resume.code(), missing_resume.message()),
            "resume of another user's session"
        );
        // Choosing the same id for an upload of his own simply works (it used to be refused as
        // "already used", which told him the id existed).
        let mut messages = vec![header(&their_request, &session, &jpeg, 0)];
        messages.extend(chunk_messages(&jpeg, 0, jpeg.len()));
        let result = theirs
            .attach_image(futures::stream::iter(messages))
            .await
            .expect("an upload of his own with the same id")
            .into_inner()
            .result
            .expect("result");
        assert_eq!(result.upload_session_id, session);
        assert!(!result.already_completed);

        // The owner's session is untouched: it resumes where it stopped.
        let status = upload_status(&mut mine, &my_request, &session)
            .await
            .expect("the owner's status");
        assert_eq!(status.acknowledged_offset, half as i64);
        let mut messages = vec![header(&my_request, &session, &jpeg, half)];
        messages.extend(chunk_messages(&jpeg, half, jpeg.len()));
        mine.attach_image(futures::stream::iter(messages))
            .await
            .expect("the owner completes");
        assert_eq!(images_of(&mut mine, &my_request).await.len(), 1);
        assert_eq!(images_of(&mut theirs, &their_request).await.len(), 1);
        suite.stop().await;
    }
}

#[tokio::test]
async fn an_image_beyond_the_twentieth_is_refused_before_any_byte_is_sent() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let mut client = suite.expertise(&doctor()).await;
        let request_id = draft(&mut client).await;
        let jpeg = fixtures::jpeg_plain(64, 48);
        for i in 0..20 {
            upload(&mut client, &request_id, &jpeg)
                .await
                .unwrap_or_else(|e| panic!("image {}: {e:?}", i + 1));
        }
        // The header alone is enough for the refusal: no byte has to be sent.
        let session = uuid::Uuid::new_v4().to_string();
        let status = client
            .attach_image(futures::stream::iter(vec![header(
                &request_id,
                &session,
                &jpeg,
                0,
            )]))
            .await
            .expect_err("a 21st image");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.message(),
            "images: a request holds at most 20 images (it has 20); detach one first"
        );
        // Nothing was started: the id is still unknown.
        let unknown = upload_status(&mut client, &request_id, &session)
            .await
            .expect_err("no session");
        assert_eq!(unknown.code(), Code::NotFound);
        assert_eq!(images_of(&mut client, &request_id).await.len(), 20);
        suite.stop().await;
    }
}

async fn upload_status(
    client: &mut Expertise,
    request_id: &str,
    session: &str,
) -> Result<pb::ImageUploadStatus, tonic::Status> {
    Ok(client
        .get_image_upload_status(pb::GetImageUploadStatusRequest {
            request_id: request_id.to_owned(),
            upload_session_id: session.to_owned(),
        })
        .await?
        .into_inner()
        .status
        .expect("status"))
}

/// Polls the upload status until at least `at_least` bytes are acknowledged (10 s at most);
/// returns the offset.
async fn wait_for_progress(
    client: &mut Expertise,
    request_id: &str,
    session: &str,
    at_least: i64,
) -> i64 {
    let mut last = None;
    for _ in 0..400 {
        if let Ok(status) = upload_status(client, request_id, session).await {
            if status.acknowledged_offset >= at_least {
                return status.acknowledged_offset;
            }
            last = Some(status.acknowledged_offset);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("acknowledged {last:?}, never {at_least} bytes");
}

/// The identity the gateway vouches for, as the image pipeline keys sessions by it.
fn identity(person: &Person) -> Identity {
    Identity {
        subject: person.subject.to_owned(),
        roles: person.roles.clone(),
        org: person.org.to_owned(),
        specialty: None,
        cert_thumbprint: String::new(),
    }
}

#[tokio::test]
async fn a_browser_uploads_one_chunk_per_call_and_resumes_at_the_acknowledged_offset() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let mut client = suite.expertise(&doctor()).await;
        let request_id = draft(&mut client).await;
        let jpeg = fixtures::jpeg_with_identifying_metadata(1600, 1200);
        let session = uuid::Uuid::new_v4().to_string();
        let Some(Upload::Header(header)) = header(&request_id, &session, &jpeg, 0).part else {
            panic!("a header");
        };
        const PART: usize = 64 * 1024;
        let part = |offset: usize| pb::AttachImagePartRequest {
            header: Some(header.clone()),
            chunk: Some(pb::ImageChunk {
                offset: offset as i64,
                data: jpeg[offset..(offset + PART).min(jpeg.len())].to_vec(),
            }),
        };
        assert!(jpeg.len() > 3 * PART, "several parts: {}", jpeg.len());

        let first = client
            .attach_image_part(part(0))
            .await
            .expect("the first part")
            .into_inner();
        assert_eq!(first.acknowledged_offset, PART as i64);
        assert!(first.result.is_none());
        client
            .attach_image_part(part(PART))
            .await
            .expect("the second part");
        // The second part again (its answer was lost): refused, nothing stored twice; the
        // status says where to go on.
        let again = client
            .attach_image_part(part(PART))
            .await
            .expect_err("already acknowledged");
        assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
        let status = upload_status(&mut client, &request_id, &session)
            .await
            .expect("status");
        assert_eq!(status.acknowledged_offset, 2 * PART as i64, "{backend:?}");

        let mut offset = status.acknowledged_offset as usize;
        let mut done = None;
        while done.is_none() {
            let answer = client
                .attach_image_part(part(offset))
                .await
                .expect("a part")
                .into_inner();
            offset = answer.acknowledged_offset as usize;
            done = answer.result;
        }
        assert_eq!(offset, jpeg.len());
        let info = done.and_then(|r| r.image).expect("the stored image");
        assert_eq!(info.original_sha256_hex, sha256(&jpeg), "{backend:?}");
        let (_, stored) = download(&mut client, &request_id, &info.image_id).await;
        assert_eq!(sha256(&stored), info.sha256_hex);
        assert_eq!(images_of(&mut client, &request_id).await.len(), 1);
    }
}
