//! Patient export benchmark: `telehealth export --patient ID` (tar and FHIR) of a patient with
//! 20 and with 100 wound photos, through the real gateway over mTLS, on SQLite and the local
//! blob folder.
//!
//! `cargo bench --bench export` (`-- --images N,M`, default `20,100`; `-- --side PX` for the
//! photos' size, default 1600 × 1200, a noisy test pattern of a few hundred KiB).
//!
//! Prints, per export: wall time, the process's peak resident memory (VmHWM, read from /proc
//! while it runs) and the file's size. Target (issue 18): 100 images in < 10 s, with memory
//! flat in the number of images (the 100-image peak close to the 20-image one).

use std::{
    ffi::OsString,
    process::Command,
    time::{Duration, Instant},
};

use jiff::{SignedDuration, Timestamp};
use telehealth::suite::RunningSuite;
use telehealth_kit::record::timestamp as ts;
use telehealth_kit::{
    Settings,
    identity::Role,
    pki::DevPki,
    token::{DEFAULT_AUDIENCE, DevSigner, MintRequest, thumbprint_of_pem_file},
};
use telehealth_proto::v1::{
    self as pb, directory_service_client::DirectoryServiceClient,
    patient_service_client::PatientServiceClient, wound_service_client::WoundServiceClient,
};
use telehealth_testkit::harness::Bearer;

const ORG: &str = "cds-bench";
/// Photos per assessment (the contract's maximum).
const PER_ASSESSMENT: usize = 20;

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// A patient with consents and one wound with `images` photos over assessments of 20.
async fn seeded_patient(
    channel: &tonic::transport::Channel,
    doctor: &Bearer,
    nurse: &Bearer,
    images: usize,
    photo: &[u8],
) -> anyhow::Result<String> {
    // Members of the centre before anyone names them (care teams are checked).
    for bearer in [doctor, nurse] {
        DirectoryServiceClient::with_interceptor(channel.clone(), bearer.clone())
            .register_self(pb::RegisterSelfRequest {})
            .await?;
    }
    let mut register = PatientServiceClient::with_interceptor(channel.clone(), doctor.clone());
    let patient = register
        .create_patient(pb::CreatePatientRequest {
            identity: Some(pb::IdentityTraits {
                // Names take letters only: the image count spelled with A–J.
                birth_name: format!(
                    "EXPORT-{}",
                    images
                        .to_string()
                        .bytes()
                        .map(|d| char::from(b'A' + d - b'0'))
                        .collect::<String>()
                ),
                first_names: "Marie".into(),
                sex: pb::Sex::Female as i32,
                birth_date: "1944-02-29".into(),
                ..Default::default()
            }),
            confirm_distinct: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .patient
        .map(|p| p.id)
        .unwrap_or_default();
    register
        .record_consent(pb::RecordConsentRequest {
            patient_id: patient.clone(),
            act: pb::ConsentAct::WoundMonitoring as i32,
            decision: pb::ConsentDecision::Given as i32,
            method: pb::ConsentMethod::Oral as i32,
            ..Default::default()
        })
        .await?;
    let mut by_doctor = WoundServiceClient::with_interceptor(channel.clone(), doctor.clone());
    let wound = by_doctor
        .register_wound(pb::RegisterWoundRequest {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            patient: Some(pb::PatientRef {
                pseudonym: patient.clone(),
            }),
            description: Some(pb::WoundDescription {
                body_site: Some(pb::BodySite {
                    region: pb::BodyRegion::LowerLeg as i32,
                    laterality: pb::Laterality::Left as i32,
                    ..Default::default()
                }),
                aetiology: pb::Aetiology::VenousLegUlcer as i32,
                onset_date: "2024-01-15".into(),
                planned_assessment_interval_days: 7,
                ..Default::default()
            }),
            referring_doctor_subject: String::new(),
            care_team_nurse_subjects: vec!["nurse-export".into()],
        })
        .await?
        .into_inner()
        .wound
        .map(|w| w.wound_id)
        .unwrap_or_default();
    let mut by_nurse = WoundServiceClient::with_interceptor(channel.clone(), nurse.clone())
        .max_decoding_message_size(8 << 20);
    let mut ids = Vec::new();
    for count in 1..=images {
        let mut messages = vec![pb::UploadPhotoRequest {
            part: Some(pb::upload_photo_request::Part::Header(
                pb::UploadPhotoHeader {
                    wound_id: wound.clone(),
                    assessment_id: String::new(),
                    image: Some(pb::ImageUploadHeader {
                        upload_session_id: uuid::Uuid::new_v4().to_string(),
                        resume_offset: 0,
                        total_size_bytes: photo.len() as i64,
                        declared_kind: pb::ImageKind::WoundPhoto as i32,
                        body_site: Some(pb::BodySite {
                            region: pb::BodyRegion::LowerLeg as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
            )),
        }];
        for (n, data) in photo.chunks(512 * 1024).enumerate() {
            messages.push(pb::UploadPhotoRequest {
                part: Some(pb::upload_photo_request::Part::Chunk(pb::ImageChunk {
                    offset: (n * 512 * 1024) as i64,
                    data: data.to_vec(),
                })),
            });
        }
        let uploaded = by_nurse
            .upload_photo(tokio_stream::iter(messages))
            .await?
            .into_inner();
        ids.push(
            uploaded
                .result
                .and_then(|r| r.image)
                .map(|i| i.image_id)
                .unwrap_or_default(),
        );
        if ids.len() < PER_ASSESSMENT && count < images {
            continue;
        }
        // One assessment per 20 photos (the most that may wait), a day apart.
        let n = count.div_ceil(PER_ASSESSMENT);
        let assessed = Timestamp::now() - SignedDuration::from_hours(24 * (40 - n as i64));
        by_nurse
            .record_assessment(pb::RecordAssessmentRequest {
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                wound_id: wound.clone(),
                measurements: Some(pb::AssessmentMeasurements {
                    assessed_at: Some(ts(assessed)),
                    length_cm: 5.0,
                    width_cm: 4.0,
                    tissue_type: pb::TissueType::Granulation as i32,
                    exudate: pb::ExudateAmount::Light as i32,
                    photo_image_ids: std::mem::take(&mut ids),
                    ..Default::default()
                }),
            })
            .await?;
    }
    Ok(patient)
}

/// Runs the export, polling its peak memory: (wall time, peak KiB).
fn export(args: &[OsString], token: &str) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_telehealth"))
        .args(args)
        .env("TELEHEALTH_TOKEN", token)
        .env_remove("TELEHEALTH_CONFIG")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    anyhow::ensure!(status.success(), "export failed: {status}");
    Ok((started.elapsed(), peak))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let counts: Vec<usize> = arg("--images")
        .unwrap_or_else(|| "20,100".into())
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    let side: u32 = arg("--side").and_then(|s| s.parse().ok()).unwrap_or(1600);
    let photo = telehealth_images::format::fixtures::jpeg_plain(side, side * 3 / 4);
    let dir = tempfile::tempdir()?;
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    settings.gateway.listen = "127.0.0.1:0".parse()?;
    settings.gateway.limits.requests_per_second = 1_000_000.0;
    settings.gateway.limits.burst = 1_000_000;
    let mut suite = RunningSuite::start(settings).await?;
    suite.wait_healthy(Duration::from_secs(30)).await?;
    let settings = suite.settings.clone();
    let device = DevPki::new(settings.pki_dir()).device_files("doctor-workstation");
    let mint = |subject: &str, role: Role| -> anyhow::Result<String> {
        Ok(
            DevSigner::new(settings.data_dir.join("jwt")).mint(&MintRequest {
                subject: subject.into(),
                roles: vec![role],
                org: ORG.into(),
                specialty: None,
                cert_thumbprint: Some(thumbprint_of_pem_file(&device.cert)?),
                ttl: Duration::from_secs(3600),
                audience: DEFAULT_AUDIENCE.into(),
            })?,
        )
    };
    let (doctor, nurse) = (
        mint("dr-export", Role::Doctor)?,
        mint("nurse-export", Role::Nurse)?,
    );
    let channel = telehealth_testkit::harness::channel_to(
        suite.gateway,
        &settings,
        &(device.cert.clone(), device.key.clone()),
    )
    .await?;
    println!(
        "photos: {side} × {} px test pattern, {} KiB each",
        side * 3 / 4,
        photo.len() / 1024
    );
    println!();
    println!("| images | format | seconds | peak RSS MiB | file MiB |");
    println!("|---:|---|---:|---:|---:|");
    let gateway = suite.gateway.to_string();
    for &images in &counts {
        let patient = seeded_patient(
            &channel,
            &Bearer::new(&doctor),
            &Bearer::new(&nurse),
            images,
            &photo,
        )
        .await?;
        for format in ["tar", "fhir"] {
            let out = dir.path().join(format!("export-{images}.{format}"));
            let args: Vec<OsString> = vec![
                "export".into(),
                "--data-dir".into(),
                settings.data_dir.clone().into(),
                "--patient".into(),
                patient.clone().into(),
                "--format".into(),
                format.into(),
                "--out".into(),
                out.clone().into(),
                "--gateway".into(),
                gateway.clone().into(),
                "--cert".into(),
                device.cert.clone().into(),
                "--key".into(),
                device.key.clone().into(),
            ];
            let token = doctor.clone();
            // Off the runtime that serves the suite the export calls.
            let (elapsed, peak) =
                tokio::task::spawn_blocking(move || export(&args, &token)).await??;
            let size = std::fs::metadata(&out)?.len();
            println!(
                "| {images} | {format} | {:.2} | {:.1} | {:.1} |",
                elapsed.as_secs_f64(),
                peak as f64 / 1024.0,
                size as f64 / (1024.0 * 1024.0)
            );
        }
    }
    suite.stop().await?;
    Ok(())
}
