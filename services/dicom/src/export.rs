//! A photograph as a DICOM VL Photographic Image (PS3.3 A.32.4), the JPEG kept byte for byte.
//!
//! The IOD's modules and where each attribute comes from are listed in `tests/dicom/MAPPING.md`.
//! The choices that are not obvious:
//!
//! * **SOP class.** VL Photographic Image Storage for every kind of photo, dermoscopy included.
//!   DICOM has had a Dermoscopic Photography Image Storage class since Supplement 221
//!   (1.2.840.10008.5.1.4.1.1.77.1.7, modality `DMS`), but it makes the Enhanced General
//!   Equipment module mandatory (device serial number and software version, which the suite
//!   does not know for a patient's or a nurse's dermatoscope) and many PACS in service do not
//!   accept it yet. What applies of it is written as standard extended attributes: Light Source
//!   Polarization (0016,1001), Contact Method (0016,1003), Recognizable Visual Features NO.
//! * **Pixel data.** The JPEG's bytes, unchanged, as the one fragment of encapsulated pixel
//!   data with an empty Basic Offset Table (PS3.5 A.4), in JPEG Baseline (1.2.840.10008.1.2.4.50)
//!   or, for a `SOF1` JPEG, JPEG Extended (…4.51). PS3.5 8.2.1 says a JPEG of colour pixels is
//!   described as `YBR_FULL_422` whatever its chroma subsampling; greyscale as `MONOCHROME2`.
//! * **Times.** The suite stores UTC instants; DICOM dates and times are local. They are written
//!   in Europe/Paris time with Timezone Offset From UTC (0008,0201), and Acquisition DateTime
//!   carries its own offset.
//! * **Patient ID.** The suite's patient id, always present and stable; when the identity is
//!   qualified, the INS goes in Other Patient IDs Sequence with its OID (see [`Ins`]).

mod dataset;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::Error;

pub use dataset::{CLINICAL_SERIES, DERMOSCOPY_SERIES, WOUND_SERIES};

/// Everything needed to write one photo.
#[derive(Debug, Clone)]
pub struct PhotoExport<'a> {
    pub patient: DicomPatient,
    pub study: Study,
    /// Series Instance UID; `None` derives one from the study's UID and the kind of photo, so
    /// the dermoscopy images of a study share a series, the wound photos another.
    pub series_instance_uid: Option<String>,
    pub acquisition: Acquisition,
    /// Institution Name (0008,0080): the health centre.
    pub institution_name: String,
    /// The photo as stored by the suite (already sanitised by the image pipeline).
    pub jpeg: &'a [u8],
}

/// The patient as the suite knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomPatient {
    /// The suite's patient id, written as Patient ID (0010,0020).
    pub id: String,
    /// Birth family name; written in upper case as the first component of Patient's Name.
    pub family_name: String,
    /// Given names, space separated, as on the identity document.
    pub given_names: String,
    pub birth_date: Option<Date>,
    pub sex: Sex,
    /// The INS, only when the identity is qualified (never for a provisional identity).
    pub ins: Option<Ins>,
}

/// Patient's Sex (0010,0040).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
    Other,
    /// Written empty (the attribute is type 2).
    Unknown,
}

/// A French national health identifier (INS) of a qualified identity.
///
/// Written as an item of Other Patient IDs Sequence (0010,1002): Patient ID = the INS number,
/// Issuer of Patient ID = `INS-NIR` or `INS-NIA` (after the OID), Type of Patient ID = `TEXT`,
/// and Issuer of Patient ID Qualifiers Sequence with Universal Entity ID = the OID and Universal
/// Entity ID Type = `ISO`, as the ANS's CI-SIS asks for the INS in DICOM. The CI-SIS also allows
/// the INS as the main Patient ID; the suite keeps its own id there because it exists for every
/// patient, qualified or not, and never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ins {
    /// The 15-character matricule (NIR or NIA).
    pub number: String,
    /// `1.2.250.1.213.1.4.8` (NIR), `1.2.250.1.213.1.4.9` (NIA) or the test OIDs
    /// `1.2.250.1.213.1.4.10`/`.11`.
    pub oid: String,
}

/// A person, e.g. the referring physician.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName {
    pub family_name: String,
    pub given_names: String,
}

/// The study the photo belongs to: in the suite, a tele-expertise request or a wound follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Study {
    /// Study Instance UID; `None` derives one from the accession number, so every photo of one
    /// request lands in one study.
    pub instance_uid: Option<String>,
    /// Accession Number (0008,0050), at most 16 characters: the suite's request number.
    pub accession_number: String,
    /// Study Description (0008,1030).
    pub description: String,
    pub referring_physician: Option<PersonName>,
    /// Study Date and Time.
    pub started_at: Timestamp,
}

/// How and when the photo was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquisition {
    pub taken_at: Timestamp,
    pub kind: PhotoKind,
    pub body_site: Option<BodySite>,
    /// Image Laterality (0020,0062).
    pub laterality: Option<Laterality>,
    /// Manufacturer (0008,0070) of the camera or dermatoscope; may be empty.
    pub manufacturer: String,
    /// Manufacturer's Model Name (0008,1090); may be empty.
    pub model: String,
    /// Instance Number (0020,0013): the photo's rank in its series, when the caller keeps one.
    pub instance_number: Option<u32>,
}

/// What the photo shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoKind {
    /// Through a dermatoscope; what is known of the optics.
    Dermoscopy {
        /// Light Source Polarization (0016,1001): POLARIZED or NON_POLARIZED.
        polarized: Option<bool>,
        /// Contact Method (0016,1003): CONTACT or NON_CONTACT.
        contact: Option<bool>,
    },
    /// A wound, for its follow-up.
    Wound,
    /// Any other clinical photograph.
    Clinical,
}

/// Where on the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySite {
    /// Free text, as typed (e.g. "dos, omoplate gauche"); written in Image Comments.
    pub text: String,
    /// The SNOMED CT code when known, written in Anatomic Region Sequence (0008,2218).
    pub snomed: Option<SnomedCode>,
}

/// A SNOMED CT concept (coding scheme designator `SCT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnomedCode {
    /// The concept id, e.g. `39937001` (skin structure).
    pub code: String,
    /// Its display name, written as Code Meaning.
    pub meaning: String,
}

/// Image Laterality (0020,0062).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Laterality {
    Left,
    Right,
    /// Both sides.
    Both,
    /// An unpaired body part (e.g. the back).
    Unpaired,
}

impl Laterality {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Laterality::Left => "L",
            Laterality::Right => "R",
            Laterality::Both => "B",
            Laterality::Unpaired => "U",
        }
    }
}

/// Writes `photo` as a DICOM Part 10 file (VL Photographic Image, encapsulated JPEG).
///
/// The JPEG's frame header is read to fill Rows, Columns and the photometric interpretation;
/// the image itself is not decoded. Progressive and lossless JPEGs are refused (re-exporting
/// them as baseline is the caller's choice, not a silent re-encoding here).
pub fn vl_photographic(photo: &PhotoExport<'_>) -> Result<Vec<u8>, Error> {
    let frame = crate::jpeg::frame(photo.jpeg)?;
    dataset::write(photo, &frame)
}
