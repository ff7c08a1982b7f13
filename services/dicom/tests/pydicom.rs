//! pydicom, an independent DICOM implementation, reads back what the suite writes: names with
//! accents, identifiers, classes, sizes, and the JPEG byte for byte.

mod support;

use std::process::Command;

use support::{dermoscopy, jpeg, photo, python_with_pydicom, temp_file, tests_dicom_dir};
use telehealth_dicom::{PhotoKind, uids, vl_photographic};

fn read(python: &std::path::Path, path: &std::path::Path) -> serde_json::Value {
    let script = tests_dicom_dir().join("read_with_pydicom.py");
    let output = Command::new(python)
        .arg(script)
        .arg(path)
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "pydicom failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the pydicom script")
}

#[test]
fn pydicom_reads_names_ids_class_syntax_size_and_the_original_jpeg() {
    let Some(python) = python_with_pydicom() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // An even-length and an odd-length JPEG: the odd one gets a pad byte in its fragment.
    let mut odd = jpeg(33, 17);
    if odd.len().is_multiple_of(2) {
        // A COM segment of 1 byte (length 3) after SOI makes the file odd.
        odd.splice(2..2, [0xFF, 0xFE, 0x00, 0x03, b'x']);
    }
    let cases = [
        (
            "dermoscopy, even JPEG, INS",
            dermoscopy(),
            true,
            jpeg(64, 48),
            (48, 64),
        ),
        (
            "wound, odd JPEG, no INS",
            PhotoKind::Wound,
            false,
            odd,
            (17, 33),
        ),
    ];
    for (case, kind, qualified, image, (rows, columns)) in cases {
        let file = vl_photographic(&photo(kind, qualified, &image))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let found = read(&python, &temp_file(&dir, "photo.dcm", &file));
        eprintln!("{case}: pydicom {}", found["pydicom"]);
        assert_eq!(found["PatientName"], "LEFÈVRE-ÉTIENNE^Zoé Hélène", "{case}");
        assert_eq!(found["PatientID"], "PAT-0042", "{case}");
        assert_eq!(
            found["SOPClassUID"],
            uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE,
            "{case}"
        );
        assert_eq!(found["TransferSyntaxUID"], uids::JPEG_BASELINE, "{case}");
        assert_eq!(found["PhotometricInterpretation"], "YBR_FULL_422", "{case}");
        assert_eq!(found["Modality"], "XC", "{case}");
        assert_eq!(
            found["InstitutionName"], "Centre de santé Saint-Éloi",
            "{case}"
        );
        // 08:15:42 UTC on 1 July is 10:15:42 in Paris (summer time).
        assert_eq!(
            found["AcquisitionDateTime"], "20260701101542+0200",
            "{case}"
        );
        assert_eq!(found["TimezoneOffsetFromUTC"], "+0200", "{case}");
        assert_eq!(
            (found["Rows"].as_u64(), found["Columns"].as_u64()),
            (Some(rows), Some(columns)),
            "{case}"
        );
        assert_eq!(
            found["offset_table_length"], 0,
            "{case}: empty basic offset table"
        );
        assert_eq!(found["fragments"], 1, "{case}: one fragment");
        let mut expected = image.clone();
        if !expected.len().is_multiple_of(2) {
            expected.push(0);
        }
        assert_eq!(
            found["fragment0"].as_str(),
            Some(hex(&expected).as_str()),
            "{case}: the fragment is the JPEG"
        );
        let other = &found["OtherPatientIDs"];
        if qualified {
            assert_eq!(other[0]["PatientID"], "257022A12345678", "{case}");
            assert_eq!(other[0]["IssuerOfPatientID"], "INS-NIR", "{case}");
            assert_eq!(
                other[0]["UniversalEntityID"], "1.2.250.1.213.1.4.8",
                "{case}"
            );
            assert_eq!(other[0]["UniversalEntityIDType"], "ISO", "{case}");
        } else {
            assert_eq!(
                other.as_array().map(Vec::len),
                Some(0),
                "{case}: no INS without a qualified identity"
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
