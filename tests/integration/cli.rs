//! Every subcommand documents itself, and bad arguments fail clearly.

use crate::harness::{stderr, stdout, telehealth};

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["--help"][..],
        &["up", "--help"],
        &["serve", "--help"],
        &["pki", "--help"],
        &["pki", "init", "--help"],
        &["pki", "issue", "--help"],
        &["pki", "issue", "device", "--help"],
        &["token", "mint", "--help"],
        &["migrate", "--help"],
        &["audit", "verify", "--help"],
    ] {
        let output = telehealth(dir.path(), args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(stdout(&output).contains("Usage:"), "{args:?} prints usage");
    }
}

#[test]
fn bad_arguments_give_a_clear_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&[&str], &str); 6] = [
        (
            &["serve", "radiology"],
            "expected one of gateway, scheduling",
        ),
        (
            &["token", "mint", "--sub", "x", "--role", "doctor"],
            "--org",
        ),
        (
            &[
                "token",
                "mint",
                "--sub",
                "x",
                "--role",
                "pope",
                "--org",
                "o",
                "--unbound",
            ],
            "unknown role",
        ),
        (
            &[
                "token",
                "mint",
                "--sub",
                "x",
                "--role",
                "doctor",
                "--org",
                "o",
                "--unbound",
                "--ttl",
                "1y",
            ],
            "unknown unit",
        ),
        (&["pki", "issue", "device", "Bad Name"], "device name"),
        (&["audit", "verify", "gateway"], "gateway has no database"),
    ];
    for (args, expected) in cases {
        let output = telehealth(dir.path(), args);
        assert!(!output.status.success(), "{args:?} must fail");
        let message = stderr(&output);
        assert!(
            message.contains(expected),
            "{args:?}: expected `{expected}` in: {message}"
        );
    }
}

#[test]
fn minting_without_a_signing_key_says_how_to_get_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = telehealth(
        dir.path(),
        &[
            "token",
            "mint",
            "--sub",
            "x",
            "--role",
            "doctor",
            "--org",
            "o",
            "--unbound",
        ],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no dev signing key"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn migrate_then_audit_verify_reports_intact_empty_chains() {
    let dir = tempfile::tempdir().expect("temp dir");
    let migrated = telehealth(dir.path(), &["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    for part in ["scheduling", "expertise", "wound", "signalling"] {
        assert!(stdout(&migrated).contains(&format!("{part}: migrations applied")));
    }
    let verified = telehealth(dir.path(), &["audit", "verify"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stdout(&verified).contains("wound: audit chain intact (0 records)"),
        "{}",
        stdout(&verified)
    );
}

#[tokio::test]
async fn audit_verify_names_the_first_broken_link_and_exits_non_zero() {
    use telehealth_kit::{
        Database, Part, Settings,
        audit::{self, AuditEntry, Outcome},
        identity::Caller,
    };

    let dir = tempfile::tempdir().expect("temp dir");
    assert!(
        telehealth(dir.path(), &["migrate", "wound"])
            .status
            .success()
    );
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let db = Database::connect(&settings.database, &settings.data_dir, Part::Wound)
        .await
        .expect("open the wound database");
    let caller = Caller::Service(Part::Signalling);
    for i in 1..=3 {
        let entry = AuditEntry::new(&caller, "GetWound", "wound", format!("w{i}"), Outcome::Ok);
        audit::record(&db, &entry).await.expect("append");
    }
    sqlx::query("DROP TRIGGER audit_log_no_update")
        .execute(db.pool())
        .await
        .expect("drop trigger");
    sqlx::query("UPDATE audit_log SET outcome = 'denied' WHERE seq = 2")
        .execute(db.pool())
        .await
        .expect("tamper");
    db.close().await;

    let output = telehealth(dir.path(), &["audit", "verify", "wound"]);
    assert_eq!(output.status.code(), Some(1), "a broken chain exits 1");
    assert!(
        stdout(&output).contains("wound: audit chain BROKEN at record 2"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn call_explains_bad_methods_and_bad_json_before_connecting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&[&str], &str); 4] = [
        (
            &["call", "WoundService/Nope"],
            "no method Nope in telehealth.v1.WoundService",
        ),
        (
            &["call", "RadiologyService/Get"],
            "no service telehealth.v1.RadiologyService",
        ),
        (
            &["call", "WoundService/GetWound", "{\"woundIdd\": 1}"],
            "unrecognized field name 'woundIdd'",
        ),
        (&["call", "WoundService/UploadPhoto"], "client-streaming"),
    ];
    for (args, expected) in cases {
        let output = telehealth(dir.path(), args);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}
