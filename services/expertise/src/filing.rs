//! Filing a request's images in the answering hospital's PACS (pure): one transfer per image,
//! where each stands, and the DICOM file's input made from the request, the register's identity
//! for a report and the image's record. The transfers share the report deliveries' states,
//! retry delays and claims ([`crate::delivery`]).

use jiff::{Timestamp, civil::Date};
use telehealth_dicom as dicom;
use telehealth_proto::v1 as pb;

use crate::{delivery::DeliveryStatus, model::Request};

/// The filing of one image in one PACS.
#[derive(Debug, Clone, PartialEq)]
pub struct PacsTransfer {
    pub request_id: String,
    pub image_id: String,
    /// `AE_TITLE@host:port`.
    pub destination: String,
    /// `Delivered` means stored by the PACS.
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_error: String,
    pub next_attempt_at: Timestamp,
    pub stored_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub sop_instance_uid: String,
}

/// How a destination is named on the request.
pub fn destination_name(ae_title: &str, host: &str, port: u16) -> String {
    format!("{ae_title}@{host}:{port}")
}

/// The accession number of a request's study: its id without dashes, cut to DICOM's 16
/// characters (all photos of a request share a study, whose UID derives from it).
pub fn accession_number(request_id: &str) -> String {
    request_id.chars().filter(|c| *c != '-').take(16).collect()
}

/// The DICOM input of `image` (its JPEG bytes `jpeg`), the `number`-th image of `request` about
/// `patient`.
pub fn photo<'a>(
    request: &Request,
    patient: &pb::Patient,
    image: &pb::ImageInfo,
    number: u32,
    jpeg: &'a [u8],
) -> dicom::PhotoExport<'a> {
    let identity = patient.identity.clone().unwrap_or_default();
    let qualified = patient.identity_status == pb::IdentityStatus::Qualified as i32;
    let at = |t: Option<&prost_types::Timestamp>| t.and_then(|t| Timestamp::new(t.seconds, 0).ok());
    let site = image.body_site.clone().unwrap_or_default();
    dicom::PhotoExport {
        patient: dicom::DicomPatient {
            id: patient.id.clone(),
            family_name: identity.birth_name,
            given_names: identity.first_names,
            birth_date: identity.birth_date.parse::<Date>().ok(),
            sex: match pb::Sex::try_from(identity.sex).unwrap_or_default() {
                pb::Sex::Female => dicom::Sex::Female,
                pb::Sex::Male => dicom::Sex::Male,
                pb::Sex::Other => dicom::Sex::Other,
                pb::Sex::Unspecified | pb::Sex::Unknown => dicom::Sex::Unknown,
            },
            ins: patient
                .ins
                .as_ref()
                .filter(|_| qualified)
                .map(|ins| dicom::Ins {
                    number: ins.number.clone(),
                    oid: ins.oid.clone(),
                }),
        },
        study: dicom::Study {
            instance_uid: None,
            accession_number: accession_number(&request.id),
            description: format!("Télé-expertise {}", request.content.specialty),
            referring_physician: None,
            started_at: request.submitted_at.unwrap_or(request.created_at),
        },
        series_instance_uid: None,
        acquisition: dicom::Acquisition {
            taken_at: at(image.captured_at.as_ref())
                .or(at(image.uploaded_at.as_ref()))
                .unwrap_or(request.created_at),
            kind: match pb::ImageKind::try_from(image.kind).unwrap_or_default() {
                pb::ImageKind::Dermatoscopy => dicom::PhotoKind::Dermoscopy {
                    polarized: None,
                    contact: None,
                },
                pb::ImageKind::WoundPhoto => dicom::PhotoKind::Wound,
                _ => dicom::PhotoKind::Clinical,
            },
            body_site: (!site.description.is_empty() || !site.snomed_ct_code.is_empty()).then(
                || dicom::BodySite {
                    text: site.description.clone(),
                    snomed: None,
                },
            ),
            laterality: match pb::Laterality::try_from(site.laterality).unwrap_or_default() {
                pb::Laterality::Left => Some(dicom::Laterality::Left),
                pb::Laterality::Right => Some(dicom::Laterality::Right),
                pb::Laterality::Bilateral => Some(dicom::Laterality::Both),
                pb::Laterality::Midline => Some(dicom::Laterality::Unpaired),
                _ => None,
            },
            manufacturer: String::new(),
            model: String::new(),
            instance_number: Some(number),
        },
        institution_name: request.requester_org.clone(),
        jpeg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_study_named_by_its_id() {
        assert_eq!(
            accession_number("3f2b8c1e-9a4d-4e2f-8b1a-0c9d8e7f6a5b"),
            "3f2b8c1e9a4d4e2f"
        );
        assert_eq!(
            destination_name("PACS_CHU", "pacs.chu.fr", 104),
            "PACS_CHU@pacs.chu.fr:104"
        );
    }
}
