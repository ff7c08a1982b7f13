//! Every SQL statement of the patient register. Rows hold sealed values and blind-index
//! digests only; [`super::vault`] turns them into patients and back.

use sqlx::{AnyConnection, Row, any::AnyRow};

use crate::error::DirectoryError;

type Result<T> = std::result::Result<T, DirectoryError>;

/// A patient row as stored: sealed fields, digests, and the plain bookkeeping.
#[derive(Debug, Clone)]
pub struct PatientRow {
    pub id: String,
    pub org_id: String,
    pub merged_into: Option<String>,
    pub status: String,
    pub birth_name: String,
    pub first_names: String,
    pub used_first_name: String,
    pub used_name: String,
    pub sex: String,
    pub birth_date: String,
    pub birth_place: String,
    pub ins: Option<String>,
    pub contact: String,
    pub address: Option<String>,
    pub gp: Option<String>,
    pub birth_date_digest: String,
    pub ins_digest: Option<String>,
    pub care_team: String,
    pub objects_to_sharing: bool,
    pub objection_note: Option<String>,
    pub created_us: i64,
    pub created_by: String,
    pub updated_us: i64,
    pub version: i64,
}

const COLUMNS: &str = "id, org_id, merged_into, status, birth_name_sealed, first_names_sealed, \
    used_first_name_sealed, used_name_sealed, sex_sealed, birth_date_sealed, birth_place_sealed, \
    ins_sealed, contact_sealed, address_sealed, gp_sealed, birth_date_digest, ins_digest, \
    care_team, objects_to_sharing, objection_note_sealed, created_us, created_by, updated_us, \
    version";

fn patient_row(row: &AnyRow) -> Result<PatientRow> {
    Ok(PatientRow {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        merged_into: row.try_get("merged_into")?,
        status: row.try_get("status")?,
        birth_name: row.try_get("birth_name_sealed")?,
        first_names: row.try_get("first_names_sealed")?,
        used_first_name: row.try_get("used_first_name_sealed")?,
        used_name: row.try_get("used_name_sealed")?,
        sex: row.try_get("sex_sealed")?,
        birth_date: row.try_get("birth_date_sealed")?,
        birth_place: row.try_get("birth_place_sealed")?,
        ins: row.try_get("ins_sealed")?,
        contact: row.try_get("contact_sealed")?,
        address: row.try_get("address_sealed")?,
        gp: row.try_get("gp_sealed")?,
        birth_date_digest: row.try_get("birth_date_digest")?,
        ins_digest: row.try_get("ins_digest")?,
        care_team: row.try_get("care_team")?,
        objects_to_sharing: row.try_get::<i64, _>("objects_to_sharing")? != 0,
        objection_note: row.try_get("objection_note_sealed")?,
        created_us: row.try_get("created_us")?,
        created_by: row.try_get("created_by")?,
        updated_us: row.try_get("updated_us")?,
        version: row.try_get("version")?,
    })
}

/// Takes the organisation's lock for the rest of the transaction (its first write).
pub async fn lock_org(conn: &mut AnyConnection, org: &str, at_us: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO patient_org_locks (org_id, touched_us) VALUES ($1, $2) \
         ON CONFLICT (org_id) DO UPDATE SET touched_us = $2",
    )
    .bind(org)
    .bind(at_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts a new patient row and its name digests.
pub async fn insert_patient(
    conn: &mut AnyConnection,
    row: &PatientRow,
    names: &[(String, &str)],
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO patients ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
    ))
    .bind(&row.id)
    .bind(&row.org_id)
    .bind(&row.merged_into)
    .bind(&row.status)
    .bind(&row.birth_name)
    .bind(&row.first_names)
    .bind(&row.used_first_name)
    .bind(&row.used_name)
    .bind(&row.sex)
    .bind(&row.birth_date)
    .bind(&row.birth_place)
    .bind(&row.ins)
    .bind(&row.contact)
    .bind(&row.address)
    .bind(&row.gp)
    .bind(&row.birth_date_digest)
    .bind(&row.ins_digest)
    .bind(&row.care_team)
    .bind(i64::from(row.objects_to_sharing))
    .bind(&row.objection_note)
    .bind(row.created_us)
    .bind(&row.created_by)
    .bind(row.updated_us)
    .bind(row.version)
    .execute(&mut *conn)
    .await?;
    replace_names(conn, &row.id, names).await
}

/// Rewrites every stored field of a patient whose version is `row.version - 1`; false when the
/// version moved (a concurrent change).
pub async fn update_patient(
    conn: &mut AnyConnection,
    row: &PatientRow,
    names: &[(String, &str)],
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE patients SET status = $2, birth_name_sealed = $3, first_names_sealed = $4, \
         used_first_name_sealed = $5, used_name_sealed = $6, sex_sealed = $7, \
         birth_date_sealed = $8, birth_place_sealed = $9, ins_sealed = $10, contact_sealed = $11, \
         address_sealed = $12, gp_sealed = $13, birth_date_digest = $14, ins_digest = $15, \
         care_team = $16, objects_to_sharing = $17, objection_note_sealed = $18, \
         updated_us = $19, version = $20, merged_into = $21 \
         WHERE id = $1 AND version = $22",
    )
    .bind(&row.id)
    .bind(&row.status)
    .bind(&row.birth_name)
    .bind(&row.first_names)
    .bind(&row.used_first_name)
    .bind(&row.used_name)
    .bind(&row.sex)
    .bind(&row.birth_date)
    .bind(&row.birth_place)
    .bind(&row.ins)
    .bind(&row.contact)
    .bind(&row.address)
    .bind(&row.gp)
    .bind(&row.birth_date_digest)
    .bind(&row.ins_digest)
    .bind(&row.care_team)
    .bind(i64::from(row.objects_to_sharing))
    .bind(&row.objection_note)
    .bind(row.updated_us)
    .bind(row.version)
    .bind(&row.merged_into)
    .bind(row.version - 1)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    replace_names(conn, &row.id, names).await?;
    Ok(true)
}

async fn replace_names(
    conn: &mut AnyConnection,
    patient_id: &str,
    names: &[(String, &str)],
) -> Result<()> {
    sqlx::query("DELETE FROM patient_names WHERE patient_id = $1")
        .bind(patient_id)
        .execute(&mut *conn)
        .await?;
    for (digest, kind) in names {
        sqlx::query(
            "INSERT INTO patient_names (digest, patient_id, kind) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(digest)
        .bind(patient_id)
        .bind(*kind)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The row of `id`, an alias or not.
pub async fn patient(conn: &mut AnyConnection, id: &str) -> Result<Option<PatientRow>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM patients WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(patient_row).transpose()
}

/// True when `org` sees `patient_id`: it registered the patient, or the patient's care is
/// shared with it.
pub async fn visible_to(conn: &mut AnyConnection, patient: &PatientRow, org: &str) -> Result<bool> {
    Ok(patient.org_id == org || shared_with(conn, &patient.id, org).await?)
}

/// True when the care of `patient_id` is shared with `org`.
async fn shared_with(conn: &mut AnyConnection, patient_id: &str, org: &str) -> Result<bool> {
    let shared: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM patient_shares WHERE patient_id = $1 AND org_id = $2 LIMIT 1",
    )
    .bind(patient_id)
    .bind(org)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(shared.is_some())
}

/// The surviving id of the patient `id` names and the ids merged into it, if `org` sees that
/// patient. One statement follows the merge and lists the aliases (bookings resolve their
/// patient on every call).
pub async fn resolve(
    conn: &mut AnyConnection,
    org: &str,
    id: &str,
) -> Result<Option<(String, Vec<String>)>> {
    let rows = sqlx::query(
        "SELECT p.id, p.org_id, a.id AS alias FROM patients p \
         LEFT JOIN patients a ON a.merged_into = p.id \
         WHERE p.id = COALESCE((SELECT merged_into FROM patients WHERE id = $1), $1) \
         ORDER BY a.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let survivor: String = first.try_get("id")?;
    let owner: String = first.try_get("org_id")?;
    if owner != org && !shared_with(conn, &survivor, org).await? {
        return Ok(None);
    }
    let aliases = rows
        .iter()
        .filter_map(|row| row.try_get::<Option<String>, _>("alias").transpose())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some((survivor, aliases)))
}

/// The ids merged into `id`.
pub async fn aliases_of(conn: &mut AnyConnection, id: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM patients WHERE merged_into = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Surviving patients (not aliases) matching every criterion given, registered by `org` or
/// shared with it; at most `limit`.
pub async fn search(
    conn: &mut AnyConnection,
    org: &str,
    name_digest: Option<&str>,
    birth_date_digest: Option<&str>,
    ins_digest: Option<&str>,
    limit: i64,
) -> Result<Vec<PatientRow>> {
    let mut sql = format!(
        "SELECT {COLUMNS} FROM patients p WHERE p.merged_into IS NULL \
         AND (p.org_id = $1 OR EXISTS (SELECT 1 FROM patient_shares s \
              WHERE s.patient_id = p.id AND s.org_id = $1))"
    );
    let mut binds: Vec<&str> = Vec::new();
    if let Some(digest) = name_digest {
        binds.push(digest);
        // Driven by the name index: the candidates are the few ids under this digest.
        sql.push_str(&format!(
            " AND p.id IN (SELECT n.patient_id FROM patient_names n WHERE n.digest = ${})",
            binds.len() + 1
        ));
    }
    if let Some(digest) = birth_date_digest {
        binds.push(digest);
        sql.push_str(&format!(" AND p.birth_date_digest = ${}", binds.len() + 1));
    }
    if let Some(digest) = ins_digest {
        binds.push(digest);
        sql.push_str(&format!(" AND p.ins_digest = ${}", binds.len() + 1));
    }
    sql.push_str(&format!(" ORDER BY p.id LIMIT ${}", binds.len() + 2));
    let mut query = sqlx::query(&sql).bind(org);
    for value in binds {
        query = query.bind(value);
    }
    let rows = query.bind(limit).fetch_all(&mut *conn).await?;
    rows.iter().map(patient_row).collect()
}

/// Surviving patients of `org` whose traits match: the same birth date and one of the name
/// digests, or the same INS.
pub async fn possible_duplicates(
    conn: &mut AnyConnection,
    org: &str,
    birth_date_digest: &str,
    name_digests: &[String],
    ins_digest: Option<&str>,
) -> Result<Vec<PatientRow>> {
    let mut found: Vec<PatientRow> = Vec::new();
    for digest in name_digests {
        for row in search(conn, org, Some(digest), Some(birth_date_digest), None, 20).await? {
            if row.org_id == org && !found.iter().any(|f| f.id == row.id) {
                found.push(row);
            }
        }
    }
    if let Some(ins) = ins_digest {
        for row in search(conn, org, None, None, Some(ins), 20).await? {
            if row.org_id == org && !found.iter().any(|f| f.id == row.id) {
                found.push(row);
            }
        }
    }
    Ok(found)
}

/// A stored status change (the note sealed, the actor as JSON).
pub struct StatusChangeRow {
    pub from_status: String,
    pub to_status: String,
    pub proof: String,
    pub note: String,
    pub changed_by: String,
    pub changed_us: i64,
}

/// Appends a status change to `patient_id`'s history.
pub async fn insert_status_change(
    conn: &mut AnyConnection,
    patient_id: &str,
    change: &StatusChangeRow,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO patient_status_changes (patient_id, seq, from_status, to_status, proof, \
         note_sealed, changed_by, changed_us) \
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM patient_status_changes WHERE patient_id = $1), \
         $2, $3, $4, $5, $6, $7)",
    )
    .bind(patient_id)
    .bind(&change.from_status)
    .bind(&change.to_status)
    .bind(&change.proof)
    .bind(&change.note)
    .bind(&change.changed_by)
    .bind(change.changed_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `patient_id`'s status history, oldest first.
pub async fn status_changes(
    conn: &mut AnyConnection,
    patient_id: &str,
) -> Result<Vec<StatusChangeRow>> {
    let rows = sqlx::query(
        "SELECT from_status, to_status, proof, note_sealed, changed_by, changed_us \
         FROM patient_status_changes WHERE patient_id = $1 ORDER BY seq",
    )
    .bind(patient_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StatusChangeRow {
                from_status: row.try_get("from_status")?,
                to_status: row.try_get("to_status")?,
                proof: row.try_get("proof")?,
                note: row.try_get("note_sealed")?,
                changed_by: row.try_get("changed_by")?,
                changed_us: row.try_get("changed_us")?,
            })
        })
        .collect()
}

/// Moves the status history, shares and consents of `from` to `to` (a merge).
pub async fn move_references(conn: &mut AnyConnection, from: &str, to: &str) -> Result<()> {
    for statement in [
        "UPDATE consents SET patient_id = $2 WHERE patient_id = $1",
        "INSERT INTO patient_shares (patient_id, org_id, reason, since_us) \
         SELECT $2, org_id, reason, since_us FROM patient_shares WHERE patient_id = $1 \
         ON CONFLICT DO NOTHING",
        "UPDATE patients SET merged_into = $2 WHERE merged_into = $1",
    ] {
        sqlx::query(statement)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?;
    }
    for statement in [
        "DELETE FROM patient_shares WHERE patient_id = $1",
        "DELETE FROM patient_names WHERE patient_id = $1",
    ] {
        sqlx::query(statement)
            .bind(from)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Shares `patient_id` with `org` for `reason` (idempotent).
pub async fn insert_share(
    conn: &mut AnyConnection,
    patient_id: &str,
    org: &str,
    reason: &str,
    since_us: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO patient_shares (patient_id, org_id, reason, since_us) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(patient_id)
    .bind(org)
    .bind(reason)
    .bind(since_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The organisations `patient_id` is shared with, and why.
pub async fn shares_of(
    conn: &mut AnyConnection,
    patient_id: &str,
) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT org_id, reason FROM patient_shares WHERE patient_id = $1 ORDER BY org_id, reason",
    )
    .bind(patient_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("org_id")?, row.try_get("reason")?)))
        .collect()
}

/// A stored consent (the note sealed, actors as JSON).
#[derive(Debug, Clone)]
pub struct ConsentRow {
    pub id: String,
    pub patient_id: String,
    pub org_id: String,
    pub act: String,
    pub target_org_id: String,
    pub decision: String,
    pub method: String,
    pub document_ref: String,
    pub note: String,
    pub recorded_by: String,
    pub recorded_us: i64,
    pub withdrawn_us: Option<i64>,
    pub withdrawn_by: Option<String>,
}

const CONSENT_COLUMNS: &str = "id, patient_id, org_id, act, target_org_id, decision, method, \
    document_ref, note_sealed, recorded_by, recorded_us, withdrawn_us, withdrawn_by";

fn consent_row(row: &AnyRow) -> Result<ConsentRow> {
    Ok(ConsentRow {
        id: row.try_get("id")?,
        patient_id: row.try_get("patient_id")?,
        org_id: row.try_get("org_id")?,
        act: row.try_get("act")?,
        target_org_id: row.try_get("target_org_id")?,
        decision: row.try_get("decision")?,
        method: row.try_get("method")?,
        document_ref: row.try_get("document_ref")?,
        note: row.try_get("note_sealed")?,
        recorded_by: row.try_get("recorded_by")?,
        recorded_us: row.try_get("recorded_us")?,
        withdrawn_us: row.try_get("withdrawn_us")?,
        withdrawn_by: row.try_get("withdrawn_by")?,
    })
}

pub async fn insert_consent(conn: &mut AnyConnection, c: &ConsentRow) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO consents ({CONSENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, $13)"
    ))
    .bind(&c.id)
    .bind(&c.patient_id)
    .bind(&c.org_id)
    .bind(&c.act)
    .bind(&c.target_org_id)
    .bind(&c.decision)
    .bind(&c.method)
    .bind(&c.document_ref)
    .bind(&c.note)
    .bind(&c.recorded_by)
    .bind(c.recorded_us)
    .bind(c.withdrawn_us)
    .bind(&c.withdrawn_by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn consent(conn: &mut AnyConnection, id: &str) -> Result<Option<ConsentRow>> {
    let row = sqlx::query(&format!(
        "SELECT {CONSENT_COLUMNS} FROM consents WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(consent_row).transpose()
}

/// Withdraws a consent still in force; false when it already was.
pub async fn withdraw_consent(
    conn: &mut AnyConnection,
    id: &str,
    at_us: i64,
    by: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE consents SET withdrawn_us = $2, withdrawn_by = $3 \
         WHERE id = $1 AND withdrawn_us IS NULL",
    )
    .bind(id)
    .bind(at_us)
    .bind(by)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The consents of `patient_id`, newest first, at most `limit`.
pub async fn consents_of(
    conn: &mut AnyConnection,
    patient_id: &str,
    limit: i64,
) -> Result<Vec<ConsentRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {CONSENT_COLUMNS} FROM consents WHERE patient_id = $1 \
         ORDER BY recorded_us DESC, id DESC LIMIT $2"
    ))
    .bind(patient_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(consent_row).collect()
}

/// The newest consent record in force (not withdrawn) of `patient_id` for `act` in `org`
/// (and `target_org` for sharing): the patient's current answer.
pub async fn current_consent(
    conn: &mut AnyConnection,
    patient_id: &str,
    org: &str,
    act: &str,
    target_org: &str,
) -> Result<Option<ConsentRow>> {
    let row = sqlx::query(&format!(
        "SELECT {CONSENT_COLUMNS} FROM consents WHERE patient_id = $1 AND org_id = $2 \
         AND act = $3 AND target_org_id = $4 AND withdrawn_us IS NULL \
         ORDER BY recorded_us DESC, id DESC LIMIT 1"
    ))
    .bind(patient_id)
    .bind(org)
    .bind(act)
    .bind(target_org)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(consent_row).transpose()
}

/// Every patient row, in id order after `after`, at most `limit` (re-encryption).
pub async fn patients_after(
    conn: &mut AnyConnection,
    after: &str,
    limit: i64,
) -> Result<Vec<PatientRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM patients WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(patient_row).collect()
}

/// Rewrites the sealed notes of one status change (re-encryption).
pub async fn reseal_status_note(
    conn: &mut AnyConnection,
    patient_id: &str,
    changed_us: i64,
    old: &str,
    new: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE patient_status_changes SET note_sealed = $4 \
         WHERE patient_id = $1 AND changed_us = $2 AND note_sealed = $3",
    )
    .bind(patient_id)
    .bind(changed_us)
    .bind(old)
    .bind(new)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rewrites the sealed note of one consent (re-encryption).
pub async fn reseal_consent_note(conn: &mut AnyConnection, id: &str, new: &str) -> Result<()> {
    sqlx::query("UPDATE consents SET note_sealed = $2 WHERE id = $1")
        .bind(id)
        .bind(new)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
