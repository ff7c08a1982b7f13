//! Every SQL statement of the directory, in the dialect SQLite and PostgreSQL share.

use std::str::FromStr;

use sqlx::{AnyConnection, Row, any::AnyRow};
use telehealth_kit::{
    identity::Role,
    record::{instant, micros},
};

use crate::{
    error::DirectoryError,
    model::{Member, Organisation, Partnership, Source},
};

type Result<T> = std::result::Result<T, DirectoryError>;

const COLUMNS: &str =
    "org_id, subject, roles, specialty, since_us, until_us, source, version, rpps, profession";

fn member(row: &AnyRow) -> Result<Member> {
    let roles: String = row.try_get("roles")?;
    let source: String = row.try_get("source")?;
    Ok(Member {
        org_id: row.try_get("org_id")?,
        subject: row.try_get("subject")?,
        roles: roles
            .split(',')
            .filter_map(|r| Role::from_str(r).ok())
            .collect(),
        specialty: row.try_get("specialty")?,
        since: instant(row.try_get("since_us")?),
        until: row.try_get::<Option<i64>, _>("until_us")?.map(instant),
        source: Source::parse(&source),
        version: row.try_get("version")?,
        rpps: row.try_get("rpps")?,
        profession: row.try_get("profession")?,
    })
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The membership of `subject` in `org`, active or not.
pub async fn member_of(
    conn: &mut AnyConnection,
    org: &str,
    subject: &str,
) -> Result<Option<Member>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM members WHERE org_id = $1 AND subject = $2"
    ))
    .bind(org)
    .bind(subject)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(member).transpose()
}

/// Every membership (any organisation, active or not) of the person holding RPPS number `rpps`,
/// by organisation.
pub async fn members_with_rpps(conn: &mut AnyConnection, rpps: &str) -> Result<Vec<Member>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM members WHERE rpps = $1 ORDER BY org_id"
    ))
    .bind(rpps)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(member).collect()
}

/// The member of `org` holding RPPS number `rpps`, if any.
pub async fn member_with_rpps(
    conn: &mut AnyConnection,
    org: &str,
    rpps: &str,
) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT subject FROM members WHERE org_id = $1 AND rpps = $2")
            .bind(org)
            .bind(rpps)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Inserts a new membership (version 1).
pub async fn insert_member(conn: &mut AnyConnection, m: &Member, by: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO members (org_id, subject, roles, specialty, since_us, until_us, source, version, \
         updated_at_us, updated_by, rpps, profession) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&m.org_id)
    .bind(&m.subject)
    .bind(roles_text(&m.roles))
    .bind(m.specialty.clone())
    .bind(micros(m.since))
    .bind(m.until.map(micros))
    .bind(m.source.as_str())
    .bind(m.version)
    .bind(telehealth_kit::record::now_micros())
    .bind(by)
    .bind(m.rpps.clone())
    .bind(m.profession.clone())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes `m` over the stored membership if its version is still `m.version - 1`; false when
/// someone changed it in between.
pub async fn update_member(conn: &mut AnyConnection, m: &Member, by: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE members SET roles = $3, specialty = $4, since_us = $5, until_us = $6, source = $7, \
         version = $8, updated_at_us = $9, updated_by = $10, rpps = $12, profession = $13 \
         WHERE org_id = $1 AND subject = $2 AND version = $11",
    )
    .bind(&m.org_id)
    .bind(&m.subject)
    .bind(roles_text(&m.roles))
    .bind(m.specialty.clone())
    .bind(micros(m.since))
    .bind(m.until.map(micros))
    .bind(m.source.as_str())
    .bind(m.version)
    .bind(telehealth_kit::record::now_micros())
    .bind(by)
    .bind(m.version - 1)
    .bind(m.rpps.clone())
    .bind(m.profession.clone())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The memberships of `org` after subject `after`, by subject, at most `limit`.
pub async fn members_of_org(
    conn: &mut AnyConnection,
    org: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<Member>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM members WHERE org_id = $1 AND subject > $2 ORDER BY subject LIMIT $3"
    ))
    .bind(org)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(member).collect()
}

// ---- partnerships ----------------------------------------------------------------------------

const PARTNERSHIP_COLUMNS: &str = "centre_org_id, hospital_org_id, proposed_by, proposed_us, accepted_by, \
    accepted_us, ended_by, ended_us";

fn partnership_row(row: &AnyRow) -> Result<Partnership> {
    Ok(Partnership {
        centre: row.try_get("centre_org_id")?,
        hospital: row.try_get("hospital_org_id")?,
        proposed_by: row.try_get("proposed_by")?,
        proposed: instant(row.try_get("proposed_us")?),
        accepted_by: row.try_get("accepted_by")?,
        accepted: row.try_get::<Option<i64>, _>("accepted_us")?.map(instant),
        ended_by: row.try_get("ended_by")?,
        ended: row.try_get::<Option<i64>, _>("ended_us")?.map(instant),
    })
}

/// The partnership of `centre` with `hospital`, in whatever state.
pub async fn partnership(
    conn: &mut AnyConnection,
    centre: &str,
    hospital: &str,
) -> Result<Option<Partnership>> {
    let found = sqlx::query(&format!(
        "SELECT {PARTNERSHIP_COLUMNS} FROM partnerships WHERE centre_org_id = $1 AND hospital_org_id = $2"
    ))
    .bind(centre)
    .bind(hospital)
    .fetch_optional(&mut *conn)
    .await?;
    found.as_ref().map(partnership_row).transpose()
}

/// Writes `p` over its row (or creates it).
pub async fn save_partnership(conn: &mut AnyConnection, p: &Partnership) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO partnerships ({PARTNERSHIP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (centre_org_id, hospital_org_id) DO UPDATE SET proposed_by = $3, \
         proposed_us = $4, accepted_by = $5, accepted_us = $6, ended_by = $7, ended_us = $8"
    ))
    .bind(&p.centre)
    .bind(&p.hospital)
    .bind(&p.proposed_by)
    .bind(micros(p.proposed))
    .bind(&p.accepted_by)
    .bind(p.accepted.map(micros))
    .bind(&p.ended_by)
    .bind(p.ended.map(micros))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The partnerships of `org`, as centre or hospital, at most `limit`.
pub async fn partnerships_of(
    conn: &mut AnyConnection,
    org: &str,
    limit: i64,
) -> Result<Vec<Partnership>> {
    let rows = sqlx::query(&format!(
        "SELECT {PARTNERSHIP_COLUMNS} FROM partnerships WHERE centre_org_id = $1 OR hospital_org_id = $1 \
         ORDER BY centre_org_id, hospital_org_id LIMIT $2"
    ))
    .bind(org)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(partnership_row).collect()
}

// ---- organisations ---------------------------------------------------------------------------

/// The record of `org_id`, if its administrator wrote one.
pub async fn organisation(conn: &mut AnyConnection, org_id: &str) -> Result<Option<Organisation>> {
    let row = sqlx::query(
        "SELECT org_id, display_name, kind, finess, updated_us, version FROM organisations \
         WHERE org_id = $1",
    )
    .bind(org_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(Organisation {
            org_id: row.try_get("org_id")?,
            display_name: row.try_get("display_name")?,
            kind: row.try_get("kind")?,
            finess: row.try_get("finess")?,
            updated: instant(row.try_get("updated_us")?),
            version: row.try_get("version")?,
        })
    })
    .transpose()
}

/// The organisation recorded with FINESS number `finess`, if any.
pub async fn organisation_with_finess(
    conn: &mut AnyConnection,
    finess: &str,
) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT org_id FROM organisations WHERE finess = $1")
            .bind(finess)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Writes `o` (creates it or replaces it).
pub async fn save_organisation(conn: &mut AnyConnection, o: &Organisation, by: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO organisations (org_id, display_name, kind, finess, updated_us, updated_by, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (org_id) DO UPDATE SET \
         display_name = $2, kind = $3, finess = $4, updated_us = $5, updated_by = $6, version = $7",
    )
    .bind(&o.org_id)
    .bind(&o.display_name)
    .bind(&o.kind)
    .bind(&o.finess)
    .bind(micros(o.updated))
    .bind(by)
    .bind(o.version)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
