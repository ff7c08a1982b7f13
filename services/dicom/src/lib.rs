//! DICOM for the telehealth suite.
//!
//! Health centres archive images in a PACS, and dermatologists' software reads DICOM; the suite
//! stores photos as JPEG. This crate is the bridge, in three parts, none of which knows about
//! gRPC or the database (the callers convert their records into the plain inputs here):
//!
//! * [`vl_photographic`]: a photo (dermoscopy, wound, clinical) becomes a DICOM Part 10 file,
//!   VL Photographic Image, **with the original JPEG bytes inside**, unchanged: no re-encoding,
//!   so what the PACS stores is clinically what the device produced.
//! * [`import()`]: a dermatoscope's DICOM file becomes the JPEG (or raw pixels) and the metadata
//!   the suite needs, with hard limits: the file is untrusted input.
//! * [`c_store`]: a file is sent to a PACS (DIMSE C-STORE over the DICOM upper layer), with an
//!   error that says whether trying again later can help.
//!
//! The mapping of the suite's fields to DICOM attributes is in `tests/dicom/MAPPING.md`; every
//! file the tests write is checked by dciodvfy, read back by pydicom and stored in Orthanc.

mod error;
mod export;
mod import;
mod jpeg;
mod scan;
mod store;
mod uid;

pub use error::Error;
pub use export::{
    Acquisition, BodySite, CLINICAL_SERIES, DERMOSCOPY_SERIES, DicomPatient, Ins, Laterality,
    PersonName, PhotoExport, PhotoKind, Sex, SnomedCode, Study, WOUND_SERIES, vl_photographic,
};
pub use import::{ImportLimits, ImportedImage, ImportedPatient, Pixels, import};
pub use jpeg::{JpegFrame, JpegProcess};
pub use store::{PacsDestination, SendError, StoreOutcome, c_store};

/// The UIDs this crate writes or accepts.
pub mod uids {
    /// VL Photographic Image Storage, what [`crate::vl_photographic`] writes.
    pub const VL_PHOTOGRAPHIC_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.77.1.4";
    /// Dermoscopic Photography Image Storage (Supplement 221), accepted on import.
    pub const DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.77.1.7";
    /// Secondary Capture Image Storage, what many devices write; accepted on import.
    pub const SECONDARY_CAPTURE_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.7";
    /// JPEG Baseline (Process 1).
    pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
    /// JPEG Extended (Process 2 & 4).
    pub const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
    /// Explicit VR Little Endian.
    pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
    /// Implicit VR Little Endian.
    pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
    /// Identifies this implementation in the files' meta information (a derived `2.25` UID).
    pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.279475737326357249210346437024970545034";
    /// Implementation Version Name (at most 16 characters).
    pub const IMPLEMENTATION_VERSION_NAME: &str = "TELEHEALTH_0_1";
}
