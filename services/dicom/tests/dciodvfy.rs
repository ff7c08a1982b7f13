//! Every kind of file the suite writes passes David Clunie's dciodvfy (dicom3tools) without an
//! error: the IOD's modules, types, enumerated values and encoding are the standard's.

mod support;

use std::process::Command;

use support::{dermoscopy, jpeg, photo, temp_file, tool};
use telehealth_dicom::{PhotoKind, vl_photographic};

#[test]
fn dciodvfy_finds_no_error_in_dermoscopy_wound_and_clinical_photos() {
    let Some(dciodvfy) = tool("dciodvfy") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let colour = jpeg(64, 48);
    let cases = [
        ("dermoscopy with INS", dermoscopy(), true),
        ("dermoscopy without INS", dermoscopy(), false),
        (
            "dermoscopy, optics unknown",
            PhotoKind::Dermoscopy {
                polarized: None,
                contact: Some(true),
            },
            true,
        ),
        ("wound with INS", PhotoKind::Wound, true),
        ("wound without INS", PhotoKind::Wound, false),
        ("clinical", PhotoKind::Clinical, false),
    ];
    for (case, kind, qualified) in cases {
        let file = vl_photographic(&photo(kind, qualified, &colour))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let path = temp_file(&dir, "photo.dcm", &file);
        let output = Command::new(&dciodvfy)
            .arg(&path)
            .output()
            .expect("running dciodvfy");
        // dciodvfy writes its findings on stderr, one per line, "Error - …" or "Warning - …".
        let report = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        eprintln!("--- dciodvfy, {case}:\n{report}");
        let errors: Vec<&str> = report
            .lines()
            .filter(|line| line.starts_with("Error"))
            .collect();
        assert!(
            errors.is_empty(),
            "{case}: dciodvfy reports errors:\n{}",
            errors.join("\n")
        );
        assert!(
            report.contains("VLPhotographicImage"),
            "{case}: dciodvfy did not recognise the IOD:\n{report}"
        );
    }
}
