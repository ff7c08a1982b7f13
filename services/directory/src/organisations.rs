//! Organisations as their administrators record them: a display name, the kind (health centre
//! or hospital) and the FINESS number. The record is public to the suite's professionals (FINESS
//! data is public); only the organisation's own administrator writes it.

use telehealth_kit::{
    audit::{self, AuditEntry, Outcome},
    identity::Caller,
};

use crate::{
    core::{Directory, administrator, person},
    error::DirectoryError,
    model::{Organisation, OrganisationInput},
    store,
};

type Result<T> = std::result::Result<T, DirectoryError>;

/// A FINESS number: 9 characters, the department first (`2A`/`2B` in Corsica), then digits.
pub fn finess(field: &'static str, value: &str) -> Result<String> {
    let value = value.trim().to_ascii_uppercase();
    let chars: Vec<char> = value.chars().collect();
    let department_ok = chars.len() == 9
        && (chars[..2].iter().all(char::is_ascii_digit)
            || value.starts_with("2A")
            || value.starts_with("2B"));
    if !department_ok || !chars[2..].iter().all(char::is_ascii_digit) {
        return Err(DirectoryError::invalid(
            field,
            "a FINESS number has 9 characters: the department (2A or 2B in Corsica) then 7 digits",
        ));
    }
    Ok(value)
}

impl Directory {
    /// Records the administrator's own organisation.
    pub async fn put_organisation(
        &self,
        caller: &Caller,
        input: OrganisationInput,
    ) -> Result<Organisation> {
        let admin = administrator(caller)?;
        let now = self.now();
        let mut tx = self.db().pool().begin().await?;
        let current = store::organisation(&mut tx, &admin.org).await?;
        let version = current.as_ref().map_or(0, |o| o.version);
        if input.expected_version != 0 && input.expected_version != version {
            return Err(DirectoryError::VersionMismatch { current: version });
        }
        if store::organisation_with_finess(&mut tx, &input.finess)
            .await?
            .is_some_and(|holder| holder != admin.org)
        {
            return Err(DirectoryError::AlreadyExists(
                "this FINESS number is recorded for another organisation".into(),
            ));
        }
        let organisation = Organisation {
            org_id: admin.org.clone(),
            display_name: input.display_name,
            kind: input.kind,
            finess: input.finess,
            updated: now,
            version: version + 1,
        };
        store::save_organisation(&mut tx, &organisation, &admin.subject).await?;
        let entry = AuditEntry::new(
            caller,
            "PutOrganisation",
            "organisation",
            &organisation.org_id,
            Outcome::Ok,
        );
        audit::stage(&mut tx, &entry).await?;
        tx.commit().await?;
        self.flush().await;
        Ok(organisation)
    }

    /// Any organisation's record.
    pub async fn organisation(&self, caller: &Caller, org_id: &str) -> Result<Organisation> {
        person(caller)?;
        let mut conn = self.db().pool().acquire().await?;
        store::organisation(&mut conn, org_id)
            .await?
            .ok_or(DirectoryError::OrganisationNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finess_numbers_are_checked_for_their_format() {
        for valid in ["230780041", "2A0000117", "2b0000012", " 870000015 "] {
            assert!(finess("finess_number", valid).is_ok(), "{valid}");
        }
        for invalid in ["23078004", "2307800411", "2C0000117", "23078004X", ""] {
            assert!(finess("finess_number", invalid).is_err(), "{invalid}");
        }
    }
}
