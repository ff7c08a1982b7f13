//! `telehealth backup` / `restore` of the embedded mode: a backup taken while doctors book and
//! nurses upload photos through the gateway, restored into a new data directory, holds every
//! booking and photo acknowledged before it began, an intact audit chain and every image's bytes;
//! the restored suite serves them. And what a restore must refuse.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use telehealth::backup;
use telehealth_proto::v1::{self as pb};
use telehealth_testkit::suite::{Backend, Person, Suite};

use crate::scheduling::{booking, publish_availability, ten_oclock_in};

const CENTRE: &str = "cds-felletin";

/// What a client was told, and when.
struct Acknowledged<T> {
    at: Instant,
    what: T,
}

fn quiet(_: &str) {}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_acknowledged_booking_and_photo_intact() {
    let Some(suite) = Suite::start(Backend::Sqlite).await else {
        return;
    };
    let doctor = Person::doctor("dr-martin", CENTRE);
    let nurse = Person::nurse("nurse-claire", CENTRE);
    let patient = suite.consenting_patient(&doctor).await;
    publish_availability(&suite, &doctor).await;
    let mut wounds_of_doctor = suite.wounds(&doctor).await;
    // The nurse's client first: it makes her a member of the centre, whom a care team may name.
    let wounds_of_nurse = suite.wounds(&nurse).await;
    let wound = crate::wound::register(&mut wounds_of_doctor, &patient, &[&nurse]).await;

    let stop = Arc::new(AtomicBool::new(false));
    // A doctor booking one slot after another, 08:00-20:00 Paris, starting in 3 days.
    let bookings = {
        let (stop, mut client, patient) = (
            stop.clone(),
            suite.scheduling(&doctor).await,
            patient.clone(),
        );
        tokio::spawn(async move {
            let mut told = Vec::new();
            for i in 0i64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // 20 slots of 30 minutes from 10:00 each day.
                let start = ten_oclock_in(3 + i / 20)
                    .checked_add(jiff::SignedDuration::from_mins(30 * (i % 20)))
                    .expect("start");
                let request = booking(&patient, &format!("backup-{i}"), "dr-martin", "p", start);
                let booked = client
                    .book_appointment(request.clone())
                    .await
                    .expect("booking under load");
                let id = booked
                    .into_inner()
                    .appointment
                    .expect("appointment")
                    .appointment_id;
                told.push(Acknowledged {
                    at: Instant::now(),
                    what: (request, id),
                });
            }
            told
        })
    };
    // A nurse photographing wounds (20 photos per wound: at most 20 wait for an assessment).
    let photos = {
        let (stop, mut nurse_client, patient) = (stop.clone(), wounds_of_nurse, patient.clone());
        let mut doctor_client = wounds_of_doctor.clone();
        let first_wound = wound.wound_id.clone();
        let nurse = nurse.clone();
        tokio::spawn(async move {
            let mut told = Vec::new();
            let mut wound_id = first_wound;
            for i in 0u32.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if i > 0 && i % 20 == 0 {
                    wound_id = crate::wound::register(&mut doctor_client, &patient, &[&nurse])
                        .await
                        .wound_id;
                }
                let photo =
                    telehealth_images::format::fixtures::jpeg_plain(64 + i % 200, 48 + i % 100);
                let info = crate::wound::upload_one(&mut nurse_client, &wound_id, &photo).await;
                told.push(Acknowledged {
                    at: Instant::now(),
                    what: (wound_id.clone(), info),
                });
            }
            told
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let folder = tempfile::tempdir().expect("backups folder");
    let destination = folder.path().join("backup-1");
    let began = Instant::now();
    let manifest = backup::take(&suite.settings, &destination, true, quiet)
        .await
        .expect("backup under load");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let bookings = bookings.await.expect("bookings task");
    let photos = photos.await.expect("photos task");
    let mut settings = suite.settings.clone();
    suite.stop().await;

    assert!(manifest.is_intact(), "{:?}", manifest.checks);
    let before: Vec<_> = bookings.iter().filter(|b| b.at < began).collect();
    let photos_before: Vec<_> = photos.iter().filter(|p| p.at < began).collect();
    assert!(
        before.len() >= 5 && photos_before.len() >= 3,
        "load before the backup: {} bookings, {} photos",
        before.len(),
        photos_before.len()
    );
    assert!(
        bookings.len() > before.len() || photos.len() > photos_before.len(),
        "the load went on during the backup"
    );
    let wound_check = manifest
        .checks
        .iter()
        .find(|c| c.part == "wound")
        .expect("the wound service's data");
    assert!(wound_check.images >= photos_before.len() as u64);

    // Restored into a new data directory, with the backup's keys and PKI.
    let restored_dir = tempfile::tempdir().expect("restored data dir");
    settings.data_dir = restored_dir.path().to_path_buf();
    let report = backup::restore(&settings, &destination, false, quiet)
        .await
        .expect("restore");
    assert!(
        report.is_complete(),
        "{:?} {:?}",
        report.checks,
        report.missing_secrets
    );
    assert_eq!(report.files, manifest.files.len());
    assert!(report.moved_aside.is_none());
    let scheduling = report
        .checks
        .iter()
        .find(|c| c.part == "scheduling")
        .expect("scheduling restored");
    assert!(scheduling.audit_records > 0 && scheduling.audit_broken.is_none());

    // The restored suite serves what was acknowledged before the backup: each booking once
    // (its replay answers the same appointment), each photo byte for byte.
    let restored_path = restored_dir.path().to_path_buf();
    let restored = Suite::start_with(Backend::Sqlite, move |s| s.data_dir = restored_path)
        .await
        .expect("restored suite");
    let mut scheduling = restored.scheduling(&doctor).await;
    for told in &before {
        let (request, id) = &told.what;
        let replay = scheduling
            .book_appointment(request.clone())
            .await
            .expect("replay of an acknowledged booking")
            .into_inner()
            .appointment
            .expect("appointment");
        assert_eq!(
            &replay.appointment_id, id,
            "the same appointment, not a second one"
        );
    }
    let mut wounds = restored.wounds(&doctor).await;
    for told in &photos_before {
        let (wound_id, info) = &told.what;
        let mut download = wounds
            .download_photo(pb::DownloadPhotoRequest {
                wound_id: wound_id.clone(),
                image_id: info.image_id.clone(),
                offset: 0,
            })
            .await
            .expect("download of a restored photo")
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(message) = download.next().await {
            if let Some(pb::download_photo_response::Part::Chunk(chunk)) =
                message.expect("chunk").part
            {
                bytes.extend(chunk.data);
            }
        }
        assert_eq!(
            sha256_hex(&bytes),
            info.sha256_hex,
            "photo {}",
            info.image_id
        );
    }
    restored.stop().await;
}

#[tokio::test]
async fn a_restore_refuses_a_running_suite_a_damaged_backup_and_data_in_place_unless_replacing() {
    let Some(suite) = Suite::start(Backend::Sqlite).await else {
        return;
    };
    let doctor = Person::doctor("dr-martin", CENTRE);
    let nurse = Person::nurse("nurse-claire", CENTRE);
    let patient = suite.consenting_patient(&doctor).await;
    let mut wounds = suite.wounds(&doctor).await;
    let mut wounds_of_nurse = suite.wounds(&nurse).await;
    let wound = crate::wound::register(&mut wounds, &patient, &[&nurse]).await;
    let photo = telehealth_images::format::fixtures::jpeg_plain(80, 60);
    let info = crate::wound::upload_one(&mut wounds_of_nurse, &wound.wound_id, &photo).await;

    let folder = tempfile::tempdir().expect("backups folder");
    let with_secrets = folder.path().join("with-secrets");
    let without_secrets = folder.path().join("without-secrets");
    backup::take(&suite.settings, &with_secrets, true, quiet)
        .await
        .expect("backup");
    backup::take(&suite.settings, &without_secrets, false, quiet)
        .await
        .expect("backup without the keys");
    let again = backup::take(&suite.settings, &with_secrets, true, quiet)
        .await
        .expect_err("a backup never writes into an existing folder");
    assert!(again.to_string().contains("exists"), "{again}");
    let mut on_postgres = suite.settings.clone();
    on_postgres.database.url = Some("postgres://postgres@127.0.0.1:5432/test".into());
    let refused = backup::take(&on_postgres, &folder.path().join("pg"), false, quiet)
        .await
        .expect_err("PostgreSQL has its own backups");
    assert!(refused.to_string().contains("CloudNativePG"), "{refused}");

    // Under the running suite: refused, nothing touched.
    let running = backup::restore(&suite.settings, &with_secrets, true, quiet)
        .await
        .expect_err("restore under a running suite");
    assert!(running.to_string().contains("running"), "{running}");
    let mut settings = suite.settings.clone();
    suite.stop().await;

    // A damaged backup: refused before anything is written.
    let damaged_copy = folder.path().join("damaged");
    copy_tree(&with_secrets, &damaged_copy);
    let blob = format!("blobs/wound/images/{}", info.image_id);
    let mut bytes = std::fs::read(damaged_copy.join(&blob)).expect("photo in the backup");
    bytes[10] ^= 1;
    std::fs::write(damaged_copy.join(&blob), bytes).expect("damage");
    let empty = tempfile::tempdir().expect("empty data dir");
    settings.data_dir = empty.path().to_path_buf();
    let damaged = backup::restore(&settings, &damaged_copy, false, quiet)
        .await
        .expect_err("a damaged backup");
    assert!(
        damaged.to_string().contains("damaged") && damaged.to_string().contains(&blob),
        "{damaged}"
    );
    assert!(!empty.path().join("db").exists(), "nothing restored");

    // Without the keys: restored, but not complete until the key files are back.
    let report = backup::restore(&settings, &without_secrets, false, quiet)
        .await
        .expect("restore without keys");
    assert!(!report.is_complete());
    assert!(
        report
            .missing_secrets
            .contains(&settings.patient_key_file()),
        "{:?}",
        report.missing_secrets
    );

    // Data in place: refused without --replace; with it, moved aside, not deleted.
    let occupied = backup::restore(&settings, &with_secrets, false, quiet)
        .await
        .expect_err("data in place");
    assert!(occupied.to_string().contains("--replace"), "{occupied}");
    let report = backup::restore(&settings, &with_secrets, true, quiet)
        .await
        .expect("restore with --replace");
    assert!(report.is_complete(), "{:?}", report.checks);
    let aside = report.moved_aside.expect("the replaced data is kept");
    assert!(aside.join("db").join("wound.db").exists());
    assert!(settings.patient_key_file().exists());
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::create_dir_all(to).expect("mkdir");
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
