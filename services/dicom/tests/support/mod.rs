//! Shared by the integration tests (a folder module so that cargo does not build it as a test
//! of its own): photos to export, and the external-tool policy.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::civil::date;
use telehealth_dicom::{
    Acquisition, BodySite, DicomPatient, Ins, Laterality, PersonName, PhotoExport, PhotoKind, Sex,
    SnomedCode, Study,
};

/// A baseline JPEG of `width`×`height` (a colour gradient), as a camera would produce.
pub fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .expect("encoding a test JPEG");
    out
}

/// A patient with an accented French name; with an INS when `qualified`.
pub fn patient(qualified: bool) -> DicomPatient {
    DicomPatient {
        id: "PAT-0042".into(),
        family_name: "Lefèvre-Étienne".into(),
        given_names: "Zoé Hélène".into(),
        birth_date: Some(date(1957, 2, 28)),
        sex: Sex::Female,
        ins: qualified.then(|| Ins {
            number: "257022A123456".to_owned() + "78",
            oid: "1.2.250.1.213.1.4.8".into(),
        }),
    }
}

pub fn study() -> Study {
    Study {
        instance_uid: None,
        accession_number: "TE-2026-000123".into(),
        description: "Télé-expertise dermatologique".into(),
        referring_physician: Some(PersonName {
            family_name: "Benoît".into(),
            given_names: "François".into(),
        }),
        started_at: "2026-03-14T09:30:00Z"
            .parse::<Timestamp>()
            .expect("a timestamp"),
    }
}

/// A photo of the given kind around `jpeg`.
pub fn photo<'a>(kind: PhotoKind, qualified: bool, jpeg: &'a [u8]) -> PhotoExport<'a> {
    let dermoscopy = matches!(kind, PhotoKind::Dermoscopy { .. });
    PhotoExport {
        patient: patient(qualified),
        study: study(),
        series_instance_uid: None,
        acquisition: Acquisition {
            taken_at: "2026-07-01T08:15:42Z"
                .parse::<Timestamp>()
                .expect("a timestamp"),
            kind,
            body_site: Some(BodySite {
                text: if dermoscopy {
                    "Dos, région scapulaire gauche".into()
                } else {
                    "Talon droit, escarre".into()
                },
                snomed: dermoscopy.then(|| SnomedCode {
                    code: "39937001".into(),
                    meaning: "Skin structure".into(),
                }),
            }),
            laterality: Some(if dermoscopy {
                Laterality::Left
            } else {
                Laterality::Right
            }),
            manufacturer: "Heine Optotechnik".into(),
            model: "DELTAone".into(),
            instance_number: Some(1),
        },
        institution_name: "Centre de santé Saint-Éloi".into(),
        jpeg,
    }
}

pub fn dermoscopy() -> PhotoKind {
    PhotoKind::Dermoscopy {
        polarized: Some(true),
        contact: Some(false),
    }
}

/// The path of an external tool, or `None` (with a message) when it is missing outside CI.
///
/// # Panics
/// Under CI (`CI` set) when the tool is missing: CI must prove what the tool checks.
pub fn tool(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&dirs)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is required in CI: run .ci/install-dicom-tools");
        }
        eprintln!("SKIPPING: {name} is not installed (run .ci/install-dicom-tools)");
    }
    found
}

/// python3 with pydicom importable, or `None` with the same policy as [`tool`].
pub fn python_with_pydicom() -> Option<PathBuf> {
    let python = tool("python3")?;
    let ok = std::process::Command::new(&python)
        .args(["-c", "import pydicom"])
        .output()
        .is_ok_and(|out| out.status.success());
    if ok {
        return Some(python);
    }
    if std::env::var_os("CI").is_some() {
        panic!("pydicom is required in CI: run .ci/install-dicom-tools");
    }
    eprintln!("SKIPPING: pydicom is not installed (run .ci/install-dicom-tools)");
    None
}

/// The repository's `tests/dicom` folder.
pub fn tests_dicom_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dicom")
}

/// Writes `bytes` to a temporary `.dcm` file.
pub fn temp_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("writing a temporary DICOM file");
    path
}
