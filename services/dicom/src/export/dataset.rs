//! The attributes of a VL Photographic Image, module by module, and the Part 10 encoding.

use dicom_core::value::{DataSetSequence, PixelFragmentSequence};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR, dicom_value};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

use super::{DicomPatient, PhotoExport, PhotoKind, Sex};
use crate::jpeg::JpegFrame;
use crate::{Error, uid, uids};

/// Series Description (and Series Number) of each kind of photo, in French as the PACS's users
/// read it.
pub const DERMOSCOPY_SERIES: (&str, u32) = ("Dermoscopie", 1);
/// See [`DERMOSCOPY_SERIES`].
pub const WOUND_SERIES: (&str, u32) = ("Photographie de plaie", 2);
/// See [`DERMOSCOPY_SERIES`].
pub const CLINICAL_SERIES: (&str, u32) = ("Photographie clinique", 3);

/// DICOM dates and times are local; the suite's centres are in metropolitan France.
const TIME_ZONE: &str = "Europe/Paris";

pub(super) fn write(photo: &PhotoExport<'_>, frame: &JpegFrame) -> Result<Vec<u8>, Error> {
    let tz = TimeZone::get(TIME_ZONE).map_err(|error| Error::Encode(error.to_string()))?;
    let local = |at| Local {
        at: tz.to_datetime(at),
        offset: tz.to_offset(at),
    };
    let taken = local(photo.acquisition.taken_at);
    let started = local(photo.study.started_at);
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag: Tag, vr: VR, value: PrimitiveValue| {
        obj.put(DataElement::new(tag, vr, value));
    };

    // SOP Common. UTF-8 (ISO_IR 192) so that French names keep their accents.
    let sop_instance_uid = uid::random();
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192".into());
    put(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE.into(),
    );
    put(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        sop_instance_uid.as_str().into(),
    );
    put(
        tags::TIMEZONE_OFFSET_FROM_UTC,
        VR::SH,
        offset(&taken).into(),
    );

    // General Study.
    let study = &photo.study;
    let accession = text("AccessionNumber", &study.accession_number, 16)?;
    let study_uid = match &study.instance_uid {
        Some(given) => checked_uid("StudyInstanceUID", given)?,
        None => uid::derived("telehealth study", &accession),
    };
    put(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.as_str().into());
    put(tags::STUDY_DATE, VR::DA, date(&started).into());
    put(tags::STUDY_TIME, VR::TM, time(&started).into());
    let referring = match &study.referring_physician {
        Some(person) => person_name(
            "ReferringPhysicianName",
            &person.family_name,
            &person.given_names,
        )?,
        None => String::new(),
    };
    put(tags::REFERRING_PHYSICIAN_NAME, VR::PN, referring.into());
    put(tags::STUDY_ID, VR::SH, accession.as_str().into());
    put(tags::ACCESSION_NUMBER, VR::SH, accession.as_str().into());
    let description = text("StudyDescription", &study.description, 64)?;
    if !description.is_empty() {
        put(tags::STUDY_DESCRIPTION, VR::LO, description.into());
    }

    // General Series. XC: external-camera photography, the modality of VL Photographic.
    let acquisition = &photo.acquisition;
    let (series_description, series_number) = match acquisition.kind {
        PhotoKind::Dermoscopy { .. } => DERMOSCOPY_SERIES,
        PhotoKind::Wound => WOUND_SERIES,
        PhotoKind::Clinical => CLINICAL_SERIES,
    };
    let series_uid = match &photo.series_instance_uid {
        Some(given) => checked_uid("SeriesInstanceUID", given)?,
        None => uid::derived("telehealth series", &format!("{study_uid}/{series_number}")),
    };
    put(tags::MODALITY, VR::CS, "XC".into());
    put(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        series_uid.as_str().into(),
    );
    put(
        tags::SERIES_NUMBER,
        VR::IS,
        series_number.to_string().into(),
    );
    put(tags::SERIES_DESCRIPTION, VR::LO, series_description.into());

    // General Equipment.
    put(
        tags::MANUFACTURER,
        VR::LO,
        text("Manufacturer", &acquisition.manufacturer, 64)?.into(),
    );
    let institution = text("InstitutionName", &photo.institution_name, 64)?;
    if !institution.is_empty() {
        put(tags::INSTITUTION_NAME, VR::LO, institution.into());
    }
    let model = text("ManufacturerModelName", &acquisition.model, 64)?;
    if !model.is_empty() {
        put(tags::MANUFACTURER_MODEL_NAME, VR::LO, model.into());
    }

    // General Acquisition, General Image, VL Image.
    put(
        tags::IMAGE_TYPE,
        VR::CS,
        dicom_value!(Strs, ["ORIGINAL", "PRIMARY"]),
    );
    put(
        tags::ACQUISITION_DATE_TIME,
        VR::DT,
        format!("{}{}{}", date(&taken), time(&taken), offset(&taken)).into(),
    );
    put(tags::CONTENT_DATE, VR::DA, date(&taken).into());
    put(tags::CONTENT_TIME, VR::TM, time(&taken).into());
    let instance_number = acquisition
        .instance_number
        .map(|n| n.to_string())
        .unwrap_or_default();
    put(tags::INSTANCE_NUMBER, VR::IS, instance_number.into());
    put(tags::PATIENT_ORIENTATION, VR::CS, PrimitiveValue::Empty);
    // A camera's JPEG is lossy: say so, with the method and the ratio to 8-bit raw samples.
    put(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "01".into());
    let raw_size = f64::from(frame.rows) * f64::from(frame.columns) * f64::from(frame.components);
    let ratio = raw_size * f64::from(frame.precision) / 8.0 / photo.jpeg.len().max(1) as f64;
    put(
        tags::LOSSY_IMAGE_COMPRESSION_RATIO,
        VR::DS,
        format!("{ratio:.2}").into(),
    );
    put(
        tags::LOSSY_IMAGE_COMPRESSION_METHOD,
        VR::CS,
        "ISO_10918_1".into(),
    );
    if let Some(laterality) = acquisition.laterality {
        put(tags::IMAGE_LATERALITY, VR::CS, laterality.code().into());
    }
    if let Some(site) = &acquisition.body_site {
        let site_text = text("body site", &site.text, 10_240)?;
        if !site_text.is_empty() {
            put(tags::IMAGE_COMMENTS, VR::LT, site_text.into());
        }
    }
    if let PhotoKind::Dermoscopy { polarized, contact } = acquisition.kind {
        // Supplement 221's Dermoscopic Image attributes, as standard extended attributes.
        if let Some(polarized) = polarized {
            let value = if polarized {
                "POLARIZED"
            } else {
                "NON_POLARIZED"
            };
            put(tags::LIGHT_SOURCE_POLARIZATION, VR::CS, value.into());
        }
        if let Some(contact) = contact {
            let value = if contact { "CONTACT" } else { "NON_CONTACT" };
            put(tags::CONTACT_METHOD, VR::CS, value.into());
        }
        // A dermoscopic field of a few millimetres cannot identify the patient.
        put(tags::RECOGNIZABLE_VISUAL_FEATURES, VR::CS, "NO".into());
    }

    // Image Pixel: described from the JPEG's frame header; the samples stay compressed.
    let colour = frame.components == 3;
    put(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(u16::from(frame.components)),
    );
    put(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        if colour {
            "YBR_FULL_422"
        } else {
            "MONOCHROME2"
        }
        .into(),
    );
    if colour {
        put(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        );
    }
    put(tags::ROWS, VR::US, PrimitiveValue::from(frame.rows));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(frame.columns));
    let bits_allocated: u16 = if frame.precision > 8 { 16 } else { 8 };
    put(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(bits_allocated),
    );
    put(
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(u16::from(frame.precision)),
    );
    put(
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(u16::from(frame.precision) - 1),
    );
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0u16),
    );

    patient_module(&mut obj, &photo.patient)?;

    // Acquisition Context: type 2, no structured context is recorded.
    obj.put(DataElement::new(
        tags::ACQUISITION_CONTEXT_SEQUENCE,
        VR::SQ,
        DataSetSequence::<InMemDicomObject>::empty(),
    ));
    if let Some(code) = acquisition
        .body_site
        .as_ref()
        .and_then(|site| site.snomed.as_ref())
    {
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            text("SNOMED CT code", &code.code, 16)?,
        ));
        item.put(DataElement::new(
            tags::CODING_SCHEME_DESIGNATOR,
            VR::SH,
            "SCT",
        ));
        item.put(DataElement::new(
            tags::CODE_MEANING,
            VR::LO,
            text("SNOMED CT meaning", &code.meaning, 64)?,
        ));
        obj.put(DataElement::new(
            tags::ANATOMIC_REGION_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
    }

    // The JPEG as the single fragment; an item's length must be even (PS3.5 A.4), so an odd
    // JPEG gets one trailing zero byte, which decoders ignore after EOI.
    let mut fragment = Vec::with_capacity(photo.jpeg.len() + 1);
    fragment.extend_from_slice(photo.jpeg);
    if !fragment.len().is_multiple_of(2) {
        fragment.push(0);
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(Vec::<u32>::new(), vec![fragment]),
    ));

    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(frame.transfer_syntax())
                .implementation_class_uid(uids::IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(uids::IMPLEMENTATION_VERSION_NAME),
        )
        .map_err(|error| Error::Encode(error.to_string()))?;
    let mut out = Vec::with_capacity(photo.jpeg.len() + 4096);
    file.write_all(&mut out)
        .map_err(|error| Error::Encode(error.to_string()))?;
    Ok(out)
}

/// Patient: name, id, birth date, sex, and the INS of a qualified identity.
fn patient_module(obj: &mut InMemDicomObject, patient: &DicomPatient) -> Result<(), Error> {
    let id = text("PatientID", &patient.id, 64)?;
    if id.is_empty() {
        return Err(invalid("PatientID", "empty"));
    }
    let name = person_name("PatientName", &patient.family_name, &patient.given_names)?;
    obj.put(DataElement::new(tags::PATIENT_NAME, VR::PN, name));
    obj.put(DataElement::new(tags::PATIENT_ID, VR::LO, id));
    let birth = patient
        .birth_date
        .map(|d| d.strftime("%Y%m%d").to_string())
        .unwrap_or_default();
    obj.put(DataElement::new(tags::PATIENT_BIRTH_DATE, VR::DA, birth));
    let sex = match patient.sex {
        Sex::Male => "M",
        Sex::Female => "F",
        Sex::Other => "O",
        Sex::Unknown => "",
    };
    obj.put(DataElement::new(tags::PATIENT_SEX, VR::CS, sex));
    if let Some(ins) = &patient.ins {
        let number = text("INS", &ins.number, 64)?;
        if number.len() != 15 || !number.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                "INS",
                "the matricule has 15 characters (digits, 2A/2B for Corsica)",
            ));
        }
        let oid = checked_uid("INS OID", &ins.oid)?;
        let issuer = match oid.as_str() {
            "1.2.250.1.213.1.4.9" | "1.2.250.1.213.1.4.11" => "INS-NIA",
            _ => "INS-NIR",
        };
        let mut qualifiers = InMemDicomObject::new_empty();
        qualifiers.put(DataElement::new(tags::UNIVERSAL_ENTITY_ID, VR::UT, oid));
        qualifiers.put(DataElement::new(
            tags::UNIVERSAL_ENTITY_ID_TYPE,
            VR::CS,
            "ISO",
        ));
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(tags::PATIENT_ID, VR::LO, number));
        item.put(DataElement::new(tags::ISSUER_OF_PATIENT_ID, VR::LO, issuer));
        item.put(DataElement::new(
            tags::ISSUER_OF_PATIENT_ID_QUALIFIERS_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![qualifiers]),
        ));
        item.put(DataElement::new(tags::TYPE_OF_PATIENT_ID, VR::CS, "TEXT"));
        obj.put(DataElement::new(
            tags::OTHER_PATIENT_I_DS_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
    }
    Ok(())
}

fn invalid(attribute: &'static str, reason: &str) -> Error {
    Error::InvalidValue {
        attribute,
        reason: reason.to_owned(),
    }
}

/// A string value: trimmed, at most `max_chars` characters, no backslash (the DICOM value
/// separator) and no control character.
fn text(attribute: &'static str, value: &str, max_chars: usize) -> Result<String, Error> {
    let value = value.trim();
    if value.chars().count() > max_chars {
        return Err(invalid(
            attribute,
            &format!("longer than {max_chars} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c == '\\' || (c.is_control() && c != '\n' && c != '\r'))
    {
        return Err(invalid(attribute, "backslash or control character"));
    }
    Ok(value.to_owned())
}

/// `FAMILY^Given Names`: the family name in upper case as on French identity documents; `^`
/// and `=` are component separators in a person name, so they cannot appear inside one.
fn person_name(attribute: &'static str, family: &str, given: &str) -> Result<String, Error> {
    let family = text(attribute, family, 64)?.to_uppercase();
    let given = text(attribute, given, 64)?;
    if family.contains(['^', '=']) || given.contains(['^', '=']) {
        return Err(invalid(attribute, "'^' or '=' in a name"));
    }
    let name = if given.is_empty() {
        family
    } else {
        format!("{family}^{given}")
    };
    if name.chars().count() > 64 {
        return Err(invalid(attribute, "longer than 64 characters"));
    }
    Ok(name)
}

fn checked_uid(attribute: &'static str, value: &str) -> Result<String, Error> {
    if uid::is_valid(value) {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            attribute,
            "not a DICOM UID (digits and dots, at most 64 characters)",
        ))
    }
}

/// A local (wall clock) time in the centres' time zone, with its offset from UTC.
struct Local {
    at: DateTime,
    offset: Offset,
}

fn date(local: &Local) -> String {
    local.at.strftime("%Y%m%d").to_string()
}

fn time(local: &Local) -> String {
    local.at.strftime("%H%M%S").to_string()
}

/// `+HHMM`, as Timezone Offset From UTC and the end of a DT value want it.
fn offset(local: &Local) -> String {
    let seconds = local.offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}{:02}", minutes / 60, minutes % 60)
}
