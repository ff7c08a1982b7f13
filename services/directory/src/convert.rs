//! From the wire to validated values and back.

use telehealth_kit::{
    identity::Role,
    ids::Subject,
    record::{from_wire, role_proto, timestamp},
};
use telehealth_proto::v1 as pb;

use crate::{
    core::MEMBER_ROLES,
    error::DirectoryError,
    model::{Member, NewMember, Source},
};

type Result<T> = std::result::Result<T, DirectoryError>;

/// Most roles one membership can carry.
pub const MAX_ROLES: usize = 6;
/// Most subjects one `CheckMembers` asks about.
pub const MAX_CHECKED_SUBJECTS: usize = 64;

/// A subject (the contract's rule, [`Subject::parse`]).
pub fn subject(field: &'static str, value: &str) -> Result<String> {
    Ok(Subject::parse(field, value)?.into_string())
}

/// A role of the contract, as a member role.
pub fn role(field: &'static str, value: i32) -> Result<Role> {
    let role = match pb::Role::try_from(value) {
        Ok(pb::Role::Doctor) => Role::Doctor,
        Ok(pb::Role::Nurse) => Role::Nurse,
        Ok(pb::Role::Specialist) => Role::Specialist,
        Ok(pb::Role::Coordinator) => Role::Coordinator,
        Ok(pb::Role::Admin) => Role::Admin,
        Ok(pb::Role::Patient) => Role::Patient,
        _ => return Err(DirectoryError::invalid(field, "is not a role")),
    };
    if MEMBER_ROLES.contains(&role) {
        Ok(role)
    } else {
        Err(DirectoryError::invalid(
            field,
            "a patient is not a member of an organisation",
        ))
    }
}

/// A `PutMember` request, validated.
pub fn new_member(request: pb::PutMemberRequest) -> Result<NewMember> {
    if request.roles.is_empty() || request.roles.len() > MAX_ROLES {
        return Err(DirectoryError::invalid(
            "roles",
            format!("must hold 1 to {MAX_ROLES} roles"),
        ));
    }
    let mut roles = request
        .roles
        .iter()
        .map(|r| role("roles", *r))
        .collect::<Result<Vec<_>>>()?;
    roles.sort();
    roles.dedup();
    let specialty = Some(request.specialty.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some(specialty) = &specialty
        && (specialty.len() > 64
            || !specialty
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
    {
        return Err(DirectoryError::invalid(
            "specialty",
            "must be at most 64 characters of a-z, 0-9, _ and -",
        ));
    }
    if roles.contains(&Role::Specialist) && specialty.is_none() {
        return Err(DirectoryError::invalid(
            "specialty",
            "is required for a specialist",
        ));
    }
    let rpps = match request.rpps_number.trim() {
        "" => None,
        number => Some(rpps("rpps_number", number)?),
    };
    let profession = match pb::Profession::try_from(request.profession) {
        Ok(pb::Profession::Unspecified) => None,
        Ok(pb::Profession::Physician) => Some("physician".to_owned()),
        Ok(pb::Profession::Nurse) => Some("nurse".to_owned()),
        Ok(pb::Profession::Other) => Some("other".to_owned()),
        Err(_) => return Err(DirectoryError::invalid("profession", "is not a profession")),
    };
    Ok(NewMember {
        rpps,
        profession,
        subject: subject("subject", &request.subject)?,
        roles,
        specialty,
        since: instant("since_time", request.since_time.as_ref())?,
        until: instant("until_time", request.until_time.as_ref())?,
        expected_version: request.expected_version,
    })
}

/// An optional instant.
pub fn instant(
    field: &'static str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<jiff::Timestamp>> {
    value
        .map(|t| {
            from_wire(t).ok_or_else(|| DirectoryError::invalid(field, "is not a valid instant"))
        })
        .transpose()
}

/// A member on the wire.
pub fn member(member: &Member, now: jiff::Timestamp) -> pb::Member {
    pb::Member {
        org_id: member.org_id.clone(),
        subject: member.subject.clone(),
        roles: member.roles.iter().map(|r| role_proto(*r)).collect(),
        specialty: member.specialty.clone().unwrap_or_default(),
        since_time: Some(timestamp(member.since)),
        until_time: member.until.map(timestamp),
        source: match member.source {
            Source::Token => pb::MembershipSource::Token,
            Source::Administrator => pb::MembershipSource::Administrator,
        } as i32,
        version: member.version,
        active: member.active_at(now),
        rpps_number: member.rpps.clone().unwrap_or_default(),
        profession: match member.profession.as_deref() {
            Some("physician") => pb::Profession::Physician,
            Some("nurse") => pb::Profession::Nurse,
            Some("other") => pb::Profession::Other,
            _ => pb::Profession::Unspecified,
        } as i32,
    }
}

/// An 11-digit RPPS number whose last digit is its Luhn key.
pub fn rpps(field: &'static str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.len() != 11 || !value.chars().all(|c| c.is_ascii_digit()) {
        return Err(DirectoryError::invalid(
            field,
            "an RPPS number has 11 digits",
        ));
    }
    let sum: u32 = value
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).expect("digits checked");
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    if !sum.is_multiple_of(10) {
        return Err(DirectoryError::invalid(
            field,
            "the RPPS number's last digit (Luhn key) does not match",
        ));
    }
    Ok(value.to_owned())
}

/// A partnership on the wire.
pub fn partnership(p: &crate::model::Partnership) -> pb::Partnership {
    use crate::model::PartnershipStatus as Status;
    pb::Partnership {
        centre_org_id: p.centre.clone(),
        hospital_org_id: p.hospital.clone(),
        status: match p.status() {
            Status::Proposed => pb::PartnershipStatus::Proposed,
            Status::Active => pb::PartnershipStatus::Active,
            Status::Ended => pb::PartnershipStatus::Ended,
        } as i32,
        proposed_by: p.proposed_by.clone(),
        proposed_time: Some(timestamp(p.proposed)),
        accepted_by: p.accepted_by.clone().unwrap_or_default(),
        accepted_time: p.accepted.map(timestamp),
        ended_by: p.ended_by.clone().unwrap_or_default(),
        ended_time: p.ended.map(timestamp),
    }
}

/// A `PutOrganisation` request, validated.
pub fn organisation_input(
    request: &pb::PutOrganisationRequest,
) -> Result<crate::model::OrganisationInput> {
    let display_name = request.display_name.trim();
    if display_name.is_empty()
        || display_name.chars().count() > 200
        || display_name.chars().any(char::is_control)
    {
        return Err(DirectoryError::invalid(
            "display_name",
            "must be 1 to 200 characters without control characters",
        ));
    }
    let kind = match pb::OrganisationKind::try_from(request.kind) {
        Ok(pb::OrganisationKind::HealthCentre) => "health_centre",
        Ok(pb::OrganisationKind::Hospital) => "hospital",
        _ => {
            return Err(DirectoryError::invalid(
                "kind",
                "is required (health centre or hospital)",
            ));
        }
    };
    Ok(crate::model::OrganisationInput {
        display_name: display_name.to_owned(),
        kind: kind.to_owned(),
        finess: crate::organisations::finess("finess_number", &request.finess_number)?,
        expected_version: request.expected_version,
    })
}

/// An organisation on the wire.
pub fn organisation(o: &crate::model::Organisation) -> pb::Organisation {
    pb::Organisation {
        org_id: o.org_id.clone(),
        display_name: o.display_name.clone(),
        kind: match o.kind.as_str() {
            "health_centre" => pb::OrganisationKind::HealthCentre,
            "hospital" => pb::OrganisationKind::Hospital,
            _ => pb::OrganisationKind::Unspecified,
        } as i32,
        finess_number: o.finess.clone(),
        updated_time: Some(timestamp(o.updated)),
        version: o.version,
    }
}
