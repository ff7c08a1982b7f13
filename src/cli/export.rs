//! `telehealth export --patient ID`: everything the suite holds about one patient, for a
//! right-of-access request (RGPD art. 15), as one tar archive read through the gateway as the
//! calling doctor (the same access rules as every other read, and each read audited):
//!
//! - `patient.json`: the register's export (identity, its status history, contact, consents,
//!   shares, objection);
//! - `appointments/<id>.json`: each appointment of the patient at the centre with its history;
//! - `expertise/<id>/request.json` and `expertise/<id>/images/…`: each tele-expertise request
//!   about the patient, its messages, its report once answered, and its images as stored;
//! - `wounds/<id>/wound.json` and `wounds/<id>/photos/…`: each wound followed, every version of
//!   every assessment, its alerts and its photos as stored;
//! - `index.json`: what the archive holds, with each file's size and SHA-256, and `LISEZMOI.txt`
//!   for the patient.
//!
//! JSON follows the protobuf JSON mapping of the contract. With `--format fhir` the same reads
//! become one FHIR R4 transaction `Bundle` (JSON) instead: Patient, Consents, Appointments,
//! ServiceRequest + Task + Communications + Media (images inline) for each request, and each
//! wound's current assessments as Observations with their photos as Media.
//!
//! Either file is written next to its destination and renamed into place when complete,
//! readable by its owner only; images are written one at a time, so memory does not grow with
//! their number.

mod archive;
mod bundle;

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use telehealth_kit::Settings;
use telehealth_proto::v1::{
    self as pb, expertise_service_client::ExpertiseServiceClient,
    patient_service_client::PatientServiceClient,
    scheduling_service_client::SchedulingServiceClient, wound_service_client::WoundServiceClient,
};
use tonic::{
    Code, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use self::{archive::Archive, bundle::FhirBundle};
use super::gateway::GatewayArgs;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A tar archive of the contract's JSON and the images as stored (the default).
    Tar,
    /// One FHIR R4 transaction Bundle (JSON), images inline.
    Fhir,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// The patient's id in the register.
    #[arg(long)]
    pub patient: String,
    /// Where to write it; default `patient-<id>.tar` (or `.fhir.json`) in the current folder.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// `tar` (the contract's JSON and the images) or `fhir` (a FHIR R4 transaction Bundle).
    #[arg(long, value_enum, default_value_t = Format::Tar)]
    pub format: Format,
}

pub async fn run(args: ExportArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let extension = match args.format {
        Format::Tar => "tar",
        Format::Fhir => "fhir.json",
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("patient-{}.{extension}", args.patient)));
    let (channel, bearer) = args.gateway.connect(settings).await?;
    let clients = Clients::new(channel, Bearer(bearer));
    let partial = out.with_extension(format!("{extension}.partial"));
    let written = async {
        let mut archive = Output::create(&partial, args.format)?;
        let outcome = export(&clients, &args.patient, &mut archive).await;
        match outcome {
            Ok(()) => archive.finish(&args.patient).map(Some),
            Err(Failure::Refused(status)) => {
                eprintln!("error: {:?}: {}", status.code(), status.message());
                Ok(None)
            }
            Err(Failure::Local(error)) => Err(error),
        }
    }
    .await;
    match written {
        Ok(Some(files)) => {
            std::fs::rename(&partial, &out)
                .with_context(|| format!("cannot move the archive to {}", out.display()))?;
            println!(
                "{} ({files} {})",
                out.display(),
                match args.format {
                    Format::Tar => "files",
                    Format::Fhir => "resources",
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        other => {
            // Nothing half-written stays behind: the export is all or nothing.
            let _ = std::fs::remove_file(&partial);
            other.map(|_| ExitCode::FAILURE)
        }
    }
}

/// Why an export stopped: the suite refused a call (reported as its status), or writing failed.
enum Failure {
    Refused(Status),
    Local(anyhow::Error),
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Failure::Refused(status)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Local(error)
    }
}

async fn export(clients: &Clients, patient: &str, archive: &mut Output) -> Result<(), Failure> {
    let register = clients
        .patients()
        .export_patient(pb::ExportPatientRequest {
            patient_id: patient.to_owned(),
        })
        .await?
        .into_inner();
    archive.file("patient.json", &register.archive)?;
    if archive.wants_resources() {
        let record = clients
            .patients()
            .get_patient(pb::GetPatientRequest {
                patient_id: patient.to_owned(),
            })
            .await?
            .into_inner()
            .patient
            .ok_or_else(|| anyhow::anyhow!("the register answered without the patient"))?;
        archive.resource(telehealth_fhir::patient(&record))?;
        let consents = clients
            .patients()
            .list_consents(pb::ListConsentsRequest {
                patient_id: patient.to_owned(),
            })
            .await?
            .into_inner()
            .consents;
        for consent in &consents {
            archive.resource(telehealth_fhir::consent(consent))?;
        }
    }
    appointments(clients, patient, archive).await?;
    requests(clients, patient, archive).await?;
    wounds(clients, patient, archive).await?;
    Ok(())
}

async fn appointments(
    clients: &Clients,
    patient: &str,
    archive: &mut Output,
) -> Result<(), Failure> {
    // The patient's whole history: the listing takes up to 100 years when it names a patient.
    let now = jiff::Timestamp::now();
    let span = jiff::SignedDuration::from_hours(24 * 365 * 50);
    let range = pb::TimeRange {
        start_time: Some(timestamp(now - span)),
        end_time: Some(timestamp(now + span)),
    };
    let listed = all_pages(|page_token| {
        let mut client = clients.scheduling();
        let request = pb::ListAppointmentsRequest {
            patient: Some(pb::PatientRef {
                pseudonym: patient.to_owned(),
            }),
            period: Some(pb::list_appointments_request::Period::Range(range)),
            page_size: 500,
            page_token,
            ..Default::default()
        };
        async move {
            let r = client.list_appointments(request).await?.into_inner();
            Ok((r.appointments, r.next_page_token))
        }
    })
    .await?;
    for appointment in listed {
        let id = appointment.appointment_id.clone();
        let history = all_pages(|page_token| {
            let mut client = clients.scheduling();
            let request = pb::GetAppointmentHistoryRequest {
                appointment_id: id.clone(),
                page_size: 500,
                page_token,
            };
            async move {
                let r = client.get_appointment_history(request).await?.into_inner();
                Ok((r.events, r.next_page_token))
            }
        })
        .await?;
        let document = json!({
            "appointment": to_json(&appointment, "Appointment")?,
            "history": list_json(&history, "AppointmentEvent")?,
        });
        archive.document(&format!("appointments/{}.json", safe(&id)), &document)?;
        archive.resource(telehealth_fhir::appointment(&appointment))?;
    }
    Ok(())
}

async fn requests(clients: &Clients, patient: &str, archive: &mut Output) -> Result<(), Failure> {
    let listed = all_pages(|page_token| {
        let mut client = clients.expertise();
        let request = pb::ListMyRequestsRequest {
            whole_org: true,
            patient: Some(pb::PatientRef {
                pseudonym: patient.to_owned(),
            }),
            page_size: 200,
            page_token,
            ..Default::default()
        };
        async move {
            let r = client.list_my_requests(request).await?.into_inner();
            Ok((r.requests, r.next_page_token))
        }
    })
    .await?;
    for listed in listed {
        let id = listed.request_id.clone();
        let request = clients
            .expertise()
            .get_request(pb::GetRequestRequest {
                request_id: id.clone(),
            })
            .await?
            .into_inner();
        let messages = all_pages(|page_token| {
            let mut client = clients.expertise();
            let request = pb::ListMessagesRequest {
                request_id: id.clone(),
                page_size: 500,
                page_token,
            };
            async move {
                let r = client.list_messages(request).await?.into_inner();
                Ok((r.messages, r.next_page_token))
            }
        })
        .await?;
        // Only an answered request has a report.
        let report = match clients
            .expertise()
            .get_answer_report(pb::GetAnswerReportRequest {
                request_id: id.clone(),
            })
            .await
        {
            Ok(report) => report.into_inner().report,
            Err(status) if status.code() == Code::FailedPrecondition => None,
            Err(status) => return Err(status.into()),
        };
        let document = json!({
            "request": to_json(&request, "GetRequestResponse")?,
            "messages": list_json(&messages, "ExpertiseMessage")?,
            "report": report.map(|r| to_json(&r, "AnswerReport")).transpose()?,
        });
        let folder = format!("expertise/{}", safe(&id));
        archive.document(&format!("{folder}/request.json"), &document)?;
        let request = request.request.unwrap_or_default();
        archive.resource(telehealth_fhir::service_request(&request))?;
        archive.resource(telehealth_fhir::task(&request))?;
        for message in &messages {
            archive.resource(telehealth_fhir::communication(message, &request))?;
        }
        for image in &request.images {
            let stream = clients
                .expertise()
                .download_image(pb::DownloadImageRequest {
                    request_id: id.clone(),
                    image_id: image.image_id.clone(),
                    offset: 0,
                })
                .await?
                .into_inner()
                .map(|m| {
                    m.map(|m| match m.part {
                        Some(pb::download_image_response::Part::Chunk(chunk)) => Some(chunk.data),
                        _ => None,
                    })
                });
            let bytes = download(stream, image).await?;
            let media = telehealth_fhir::media(image, Some(("ServiceRequest", &id)), Some(patient));
            archive.image(
                &format!("{folder}/images/{}", file_name(image)),
                &bytes,
                media,
            )?;
        }
    }
    Ok(())
}

async fn wounds(clients: &Clients, patient: &str, archive: &mut Output) -> Result<(), Failure> {
    let listed = all_pages(|page_token| {
        let mut client = clients.wounds();
        let request = pb::ListDoctorWoundsRequest {
            statuses: vec![pb::WoundStatus::Open as i32, pb::WoundStatus::Closed as i32],
            whole_org: true,
            patient: Some(pb::PatientRef {
                pseudonym: patient.to_owned(),
            }),
            page_size: 200,
            page_token,
        };
        async move {
            let r = client.list_doctor_wounds(request).await?.into_inner();
            Ok((r.wounds, r.next_page_token))
        }
    })
    .await?;
    for summary in listed {
        let Some(wound) = summary.wound else {
            continue;
        };
        let id = wound.wound_id.clone();
        let found = clients
            .wounds()
            .get_wound(pb::GetWoundRequest {
                wound_id: id.clone(),
            })
            .await?
            .into_inner();
        let assessments = all_pages(|page_token| {
            let mut client = clients.wounds();
            let request = pb::ListAssessmentsRequest {
                wound_id: id.clone(),
                episode: 0,
                page_size: 200,
                page_token,
            };
            async move {
                let r = client.list_assessments(request).await?.into_inner();
                Ok((r.assessments, r.next_page_token))
            }
        })
        .await?;
        // Every version of each assessment: corrections are part of the record.
        let mut versions = Vec::new();
        for assessment in &assessments {
            let of_one = all_pages(|page_token| {
                let mut client = clients.wounds();
                let request = pb::ListAssessmentVersionsRequest {
                    assessment_id: assessment.assessment_id.clone(),
                    page_size: 200,
                    page_token,
                };
                async move {
                    let r = client.list_assessment_versions(request).await?.into_inner();
                    Ok((r.versions, r.next_page_token))
                }
            })
            .await?;
            versions.extend(of_one);
        }
        let alerts = all_pages(|page_token| {
            let mut client = clients.wounds();
            let request = pb::ListAlertsRequest {
                wound_id: id.clone(),
                page_size: 200,
                page_token,
                ..Default::default()
            };
            async move {
                let r = client.list_alerts(request).await?.into_inner();
                Ok((r.alerts, r.next_page_token))
            }
        })
        .await?;
        let document = json!({
            "wound": to_json(&found, "GetWoundResponse")?,
            "assessments": list_json(&versions, "Assessment")?,
            "alerts": list_json(&alerts, "Alert")?,
        });
        let folder = format!("wounds/{}", safe(&id));
        archive.document(&format!("{folder}/wound.json"), &document)?;
        // The current version of each assessment (earlier versions are in the tar format).
        for assessment in &assessments {
            archive.resource(telehealth_fhir::wound_assessment(assessment, patient))?;
        }
        let mut photos: Vec<&pb::ImageInfo> =
            assessments.iter().flat_map(|a| a.photos.iter()).collect();
        photos.sort_by(|a, b| a.image_id.cmp(&b.image_id));
        photos.dedup_by(|a, b| a.image_id == b.image_id);
        for photo in photos {
            let stream = clients
                .wounds()
                .download_photo(pb::DownloadPhotoRequest {
                    wound_id: id.clone(),
                    image_id: photo.image_id.clone(),
                    offset: 0,
                })
                .await?
                .into_inner()
                .map(|m| {
                    m.map(|m| match m.part {
                        Some(pb::download_photo_response::Part::Chunk(chunk)) => Some(chunk.data),
                        _ => None,
                    })
                });
            let bytes = download(stream, photo).await?;
            let media = telehealth_fhir::media(photo, None, Some(patient));
            archive.image(
                &format!("{folder}/photos/{}", file_name(photo)),
                &bytes,
                media,
            )?;
        }
    }
    Ok(())
}

/// The bytes of a downloaded image, checked against its stored size and SHA-256.
async fn download<S>(mut stream: S, image: &pb::ImageInfo) -> Result<Vec<u8>, Failure>
where
    S: futures::Stream<Item = Result<Option<Vec<u8>>, Status>> + Unpin,
{
    let expected = usize::try_from(image.size_bytes).unwrap_or(0);
    let mut bytes = Vec::with_capacity(expected);
    while let Some(chunk) = stream.next().await {
        if let Some(data) = chunk? {
            if bytes.len() + data.len() > expected {
                return Err(
                    anyhow::anyhow!("image {} is larger than stored", image.image_id).into(),
                );
            }
            bytes.extend_from_slice(&data);
        }
    }
    let digest = hex::encode(Sha256::digest(&bytes));
    if bytes.len() != expected || digest != image.sha256_hex {
        return Err(anyhow::anyhow!(
            "image {} did not arrive whole (SHA-256 {digest}, stored {})",
            image.image_id,
            image.sha256_hex
        )
        .into());
    }
    Ok(bytes)
}

/// Every item of a paged listing, following its page tokens.
async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Status>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = fetch(token).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
}

/// The JSON of a contract message (`name` in `telehealth.v1`).
fn to_json<M: prost::Message>(message: &M, name: &str) -> anyhow::Result<Value> {
    static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
    // The contract compiled into the binary always decodes; were it not to, the lookup below
    // says which message is missing.
    let pool = POOL.get_or_init(|| {
        DescriptorPool::decode(telehealth_proto::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|_| DescriptorPool::new())
    });
    let full_name = format!("{}.{name}", telehealth_proto::PACKAGE);
    let descriptor = pool
        .get_message_by_name(&full_name)
        .with_context(|| format!("no message {full_name} in the contract"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_value(&dynamic)?)
}

fn list_json<M: prost::Message>(messages: &[M], name: &str) -> anyhow::Result<Value> {
    Ok(Value::Array(
        messages
            .iter()
            .map(|m| to_json(m, name))
            .collect::<anyhow::Result<_>>()?,
    ))
}

fn timestamp(at: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.as_second(),
        nanos: at.subsec_nanosecond(),
    }
}

/// An id as a path segment: ids are UUIDs, but nothing the server sends may climb out of the
/// archive's folders.
fn safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An image's file name: its id and the extension of its detected type.
fn file_name(image: &pb::ImageInfo) -> String {
    let extension = match pb::ImageContentType::try_from(image.content_type) {
        Ok(pb::ImageContentType::Jpeg) => "jpg",
        Ok(pb::ImageContentType::Png) => "png",
        Ok(pb::ImageContentType::Dicom) => "dcm",
        _ => "bin",
    };
    format!("{}.{extension}", safe(&image.image_id))
}

/// The typed clients of the services, through the gateway, each call with the token.
struct Clients {
    channel: InterceptedService<Channel, Bearer>,
}

impl Clients {
    fn new(channel: Channel, bearer: Bearer) -> Clients {
        Clients {
            channel: InterceptedService::new(channel, bearer),
        }
    }

    fn patients(&self) -> PatientServiceClient<InterceptedService<Channel, Bearer>> {
        PatientServiceClient::new(self.channel.clone())
    }

    fn scheduling(&self) -> SchedulingServiceClient<InterceptedService<Channel, Bearer>> {
        SchedulingServiceClient::new(self.channel.clone())
    }

    fn expertise(&self) -> ExpertiseServiceClient<InterceptedService<Channel, Bearer>> {
        ExpertiseServiceClient::new(self.channel.clone()).max_decoding_message_size(8 << 20)
    }

    fn wounds(&self) -> WoundServiceClient<InterceptedService<Channel, Bearer>> {
        WoundServiceClient::new(self.channel.clone()).max_decoding_message_size(8 << 20)
    }
}

/// Adds the `authorization` header to every call.
#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Where the export goes: the tar archive or the FHIR Bundle. Each export step offers both
/// what the archive keeps (documents, files) and what the Bundle keeps (resources); each
/// output takes its own.
enum Output {
    Tar(Archive),
    Fhir(FhirBundle),
}

impl Output {
    fn create(path: &Path, format: Format) -> anyhow::Result<Output> {
        Ok(match format {
            Format::Tar => Output::Tar(Archive::create(path)?),
            Format::Fhir => Output::Fhir(FhirBundle::create(path)?),
        })
    }

    /// Whether FHIR resources are wanted (some need reads the archive does not).
    fn wants_resources(&self) -> bool {
        matches!(self, Output::Fhir(_))
    }

    /// A file of the archive, as is.
    fn file(&mut self, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Output::Tar(archive) => archive.add(path, bytes),
            Output::Fhir(_) => Ok(()),
        }
    }

    /// A JSON document of the archive.
    fn document(&mut self, path: &str, value: &Value) -> anyhow::Result<()> {
        match self {
            Output::Tar(archive) => archive.add_json(path, value),
            Output::Fhir(_) => Ok(()),
        }
    }

    /// A resource of the Bundle.
    fn resource(&mut self, resource: Value) -> anyhow::Result<()> {
        match self {
            Output::Tar(_) => Ok(()),
            Output::Fhir(bundle) => bundle.add(resource),
        }
    }

    /// An image: a file of the archive, or a Media of the Bundle with its bytes inline.
    fn image(&mut self, path: &str, bytes: &[u8], media: Value) -> anyhow::Result<()> {
        match self {
            Output::Tar(archive) => archive.add(path, bytes),
            Output::Fhir(bundle) => bundle.add_media(media, bytes),
        }
    }

    /// Closes the output; how many files or resources it holds.
    fn finish(self, patient: &str) -> anyhow::Result<usize> {
        match self {
            Output::Tar(archive) => archive.finish(patient),
            Output::Fhir(bundle) => bundle.finish(),
        }
    }
}
