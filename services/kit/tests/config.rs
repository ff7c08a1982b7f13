//! Settings from a file and the environment. These tests change the process's environment and
//! working directory (figment's jail, which runs them one at a time), so they live in their own
//! test binary: a test of the library reading `TELEHEALTH_TEST_POSTGRES_URL` at the same moment
//! would see the jail's value.

// figment's test jail returns its large error type by value; fine in tests.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use telehealth_kit::Settings;

#[test]
fn file_then_environment_override_defaults() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "telehealth.toml",
            r#"
            data_dir = "/srv/telehealth"
            [shutdown]
            drain_seconds = 30
            [scheduling]
            listen = "0.0.0.0:9000"
            "#,
        )?;
        jail.set_env("TELEHEALTH_SHUTDOWN__DRAIN_SECONDS", "20");
        jail.set_env("TELEHEALTH_CONFIG", "telehealth.toml");
        let settings =
            Settings::load(Some(Path::new("telehealth.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(settings.data_dir, PathBuf::from("/srv/telehealth"));
        assert_eq!(
            settings.shutdown.drain_seconds, 20,
            "env wins over the file"
        );
        assert_eq!(settings.scheduling.listen.port(), 9000);
        assert_eq!(settings.expertise.listen.port(), 7102, "untouched default");
        Ok(())
    });
}

#[test]
fn invalid_values_are_refused_with_the_key_named() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("TELEHEALTH_SHUTDOWN__DRAIN_SECONDS", "0");
        let error = Settings::load(None).expect_err("0 s drain is refused");
        assert!(
            error.to_string().contains("shutdown.drain_seconds"),
            "{error}"
        );
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("TELEHEALTH_DATABASE__URL", "mysql://x");
        let error = Settings::load(None).expect_err("non-postgres URL is refused");
        assert!(error.to_string().contains("database.url"), "{error}");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("TELEHEALTH_TOKEN", "eyJ...");
        jail.set_env("TELEHEALTH_TEST_POSTGRES_URL", "postgres://x");
        jail.set_env("TELEHEALTH_TEST_GARAGE_BIN", "/usr/bin/garage");
        jail.set_env("TELEHEALTH_TEST_FUZZ_SEED", "7");
        jail.set_env("TELEHEALTH_TEST_SOAK_SECONDS", "60");
        Settings::load(None).map_err(|e| e.to_string())?;
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("TELEHEALTH_NOPE", "1");
        Settings::load(None).expect_err("unknown keys are refused, not ignored");
        Ok(())
    });
}
