//! Partnerships between a centre and a hospital: proposed by the centre's administrator,
//! accepted by the hospital's, ended by either. A hospital's tele-expertise targets that take
//! partners only (`[expertise_rules]` `partners_only`) accept requests from its partner centres
//! only; the tele-expertise service asks `CheckPartnership` at submission.

use sqlx::AnyConnection;
use telehealth_kit::{
    audit::{self, AuditEntry, Outcome},
    identity::Caller,
};

use crate::{
    core::{Directory, administrator, person},
    error::DirectoryError,
    model::{Partnership, PartnershipStatus as Status},
    store,
};

type Result<T> = std::result::Result<T, DirectoryError>;

/// Partnerships listed at most.
const MAX_LISTED: i64 = 500;

impl Directory {
    /// The administrator's centre proposes a partnership to `hospital`.
    pub async fn propose_partnership(
        &self,
        caller: &Caller,
        hospital: &str,
    ) -> Result<Partnership> {
        let admin = administrator(caller)?;
        if hospital == admin.org {
            return Err(DirectoryError::invalid(
                "hospital_org_id",
                "is your own organisation",
            ));
        }
        let now = self.now();
        let mut tx = self.db().pool().begin().await?;
        let current = store::partnership(&mut tx, &admin.org, hospital).await?;
        if let Some(current) = current.filter(|p| p.status() != Status::Ended) {
            return Ok(current);
        }
        let proposed = Partnership {
            centre: admin.org.clone(),
            hospital: hospital.to_owned(),
            proposed_by: admin.subject.clone(),
            proposed: now,
            accepted_by: None,
            accepted: None,
            ended_by: None,
            ended: None,
        };
        store::save_partnership(&mut tx, &proposed).await?;
        stage(&mut tx, caller, "ProposePartnership", &proposed).await?;
        tx.commit().await?;
        self.flush().await;
        Ok(proposed)
    }

    /// The administrator's hospital accepts `centre`'s proposal.
    pub async fn accept_partnership(&self, caller: &Caller, centre: &str) -> Result<Partnership> {
        let admin = administrator(caller)?;
        let now = self.now();
        let mut tx = self.db().pool().begin().await?;
        let current = store::partnership(&mut tx, centre, &admin.org)
            .await?
            .filter(|p| p.status() != Status::Ended)
            .ok_or(DirectoryError::PartnershipNotFound)?;
        if current.status() == Status::Active {
            return Ok(current);
        }
        let accepted = Partnership {
            accepted_by: Some(admin.subject.clone()),
            accepted: Some(now),
            ..current
        };
        store::save_partnership(&mut tx, &accepted).await?;
        stage(&mut tx, caller, "AcceptPartnership", &accepted).await?;
        tx.commit().await?;
        self.flush().await;
        tracing::info!(centre = %accepted.centre, hospital = %accepted.hospital, "partnership active");
        Ok(accepted)
    }

    /// Ends the partnership of the administrator's organisation with `other`, from either side.
    pub async fn end_partnership(&self, caller: &Caller, other: &str) -> Result<Partnership> {
        let admin = administrator(caller)?;
        let now = self.now();
        let mut tx = self.db().pool().begin().await?;
        let mut current = None;
        for (centre, hospital) in [(admin.org.as_str(), other), (other, admin.org.as_str())] {
            if let Some(found) = store::partnership(&mut tx, centre, hospital)
                .await?
                .filter(|p| p.status() != Status::Ended)
            {
                current = Some(found);
                break;
            }
        }
        let current = current.ok_or(DirectoryError::PartnershipNotFound)?;
        let ended = Partnership {
            ended_by: Some(admin.subject.clone()),
            ended: Some(now),
            ..current
        };
        store::save_partnership(&mut tx, &ended).await?;
        stage(&mut tx, caller, "EndPartnership", &ended).await?;
        tx.commit().await?;
        self.flush().await;
        Ok(ended)
    }

    /// The partnerships of the caller's organisation.
    pub async fn list_partnerships(&self, caller: &Caller) -> Result<Vec<Partnership>> {
        let identity = person(caller)?;
        let mut conn = self.db().pool().acquire().await?;
        store::partnerships_of(&mut conn, &identity.org, MAX_LISTED).await
    }

    /// Whether `centre` and `hospital` are partners now (service to service).
    pub async fn check_partnership(
        &self,
        caller: &Caller,
        centre: &str,
        hospital: &str,
    ) -> Result<bool> {
        if !matches!(caller, Caller::Service(_)) {
            return Err(DirectoryError::PermissionDenied(
                "only the suite's services call this",
            ));
        }
        let mut conn = self.db().pool().acquire().await?;
        Ok(store::partnership(&mut conn, centre, hospital)
            .await?
            .is_some_and(|p| p.status() == Status::Active))
    }
}

async fn stage(
    conn: &mut AnyConnection,
    caller: &Caller,
    action: &str,
    p: &Partnership,
) -> Result<()> {
    let record = format!("{}>{}", p.centre, p.hospital);
    let entry = AuditEntry::new(caller, action, "partnership", record, Outcome::Ok);
    audit::stage(conn, &entry).await?;
    Ok(())
}
