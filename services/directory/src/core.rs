//! The directory's operations, with their authorisation, transaction and audit, knowing nothing
//! of gRPC.

use jiff::Timestamp;
use telehealth_kit::{
    Database,
    audit::{self, AuditEntry, Outcome},
    identity::{Caller, Identity, Role},
    service_core::ServiceCore,
};

use crate::{
    error::DirectoryError,
    model::{Member, NewMember, Source},
    store,
};

pub use telehealth_kit::service_core::Clock;

/// Roles a membership can carry (a patient is never a member of an organisation).
pub const MEMBER_ROLES: [Role; 5] = [
    Role::Doctor,
    Role::Nurse,
    Role::Specialist,
    Role::Coordinator,
    Role::Admin,
];

/// A page of members.
pub struct MemberPage {
    pub members: Vec<Member>,
    pub last_subject: Option<String>,
}

/// The directory's core.
#[derive(Clone)]
pub struct Directory {
    base: ServiceCore,
}

type Result<T> = std::result::Result<T, DirectoryError>;

impl Directory {
    /// A directory over `db`.
    pub fn new(db: Database, clock: Clock) -> Self {
        Directory {
            base: ServiceCore::new(db, clock),
        }
    }

    /// The directory's database.
    pub(crate) fn db(&self) -> &Database {
        self.base.db()
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.base.now()
    }

    /// Records the caller as a member of their token's organisation (first verified sign-in),
    /// or refreshes a membership their token created. An administrator's record is kept as the
    /// administrator wrote it; an ended membership is not revived.
    pub async fn register_self(&self, caller: &Caller) -> Result<Member> {
        let identity = person(caller)?;
        let roles: Vec<Role> = identity
            .roles
            .iter()
            .copied()
            .filter(|r| MEMBER_ROLES.contains(r))
            .collect();
        if roles.is_empty() {
            return Err(DirectoryError::PermissionDenied(
                "only professionals are members of an organisation",
            ));
        }
        let now = self.now();
        let mut tx = self.base.db().pool().begin().await?;
        let existing = store::member_of(&mut tx, &identity.org, &identity.subject).await?;
        let member = match existing {
            Some(member) if member.ended_at(now) => {
                drop(tx);
                self.audit(caller, "RegisterSelf", &identity.subject, Outcome::Denied)
                    .await;
                return Err(DirectoryError::PermissionDenied(
                    "your membership of this organisation has ended; ask its administrator",
                ));
            }
            Some(member)
                if member.source == Source::Administrator
                    || (member.roles == roles && member.specialty == identity.specialty) =>
            {
                return Ok(member);
            }
            Some(mut member) => {
                member.roles = roles;
                member.specialty = identity.specialty.clone();
                member.version += 1;
                if !store::update_member(&mut tx, &member, &identity.subject).await? {
                    return Err(DirectoryError::VersionMismatch {
                        current: member.version - 1,
                    });
                }
                member
            }
            None => {
                let member = Member {
                    org_id: identity.org.clone(),
                    subject: identity.subject.clone(),
                    roles,
                    specialty: identity.specialty.clone(),
                    since: now,
                    until: None,
                    source: Source::Token,
                    version: 1,
                    rpps: None,
                    profession: profession_of(&identity.roles),
                };
                store::insert_member(&mut tx, &member, &identity.subject).await?;
                member
            }
        };
        self.stage(&mut tx, caller, "RegisterSelf", &member.subject)
            .await?;
        tx.commit().await?;
        self.flush().await;
        tracing::info!(org = %member.org_id, subject = %member.subject, "member registered from their token");
        Ok(member)
    }

    /// Adds or updates a member of the administrator's organisation.
    pub async fn put_member(&self, caller: &Caller, new: NewMember) -> Result<Member> {
        let admin = administrator(caller)?;
        let now = self.now();
        let since = new.since.unwrap_or(now);
        if new.until.is_some_and(|until| until <= since) {
            return Err(DirectoryError::invalid(
                "until_time",
                "must be after since_time",
            ));
        }
        let mut tx = self.base.db().pool().begin().await?;
        let existing = store::member_of(&mut tx, &admin.org, &new.subject).await?;
        if let Some(rpps) = &new.rpps
            && store::member_with_rpps(&mut tx, &admin.org, rpps)
                .await?
                .is_some_and(|holder| holder != new.subject)
        {
            return Err(DirectoryError::AlreadyExists(
                "this RPPS number is already recorded for another member of your organisation"
                    .into(),
            ));
        }
        let member = match existing {
            Some(current) => {
                if new.expected_version != 0 && new.expected_version != current.version {
                    return Err(DirectoryError::VersionMismatch {
                        current: current.version,
                    });
                }
                let member = Member {
                    profession: new.profession.or(current.profession.clone()),
                    rpps: new.rpps.or(current.rpps.clone()),
                    roles: new.roles,
                    specialty: new.specialty,
                    since,
                    until: new.until,
                    source: Source::Administrator,
                    version: current.version + 1,
                    ..current
                };
                if !store::update_member(&mut tx, &member, &admin.subject).await? {
                    return Err(DirectoryError::VersionMismatch {
                        current: member.version - 1,
                    });
                }
                member
            }
            None => {
                let member = Member {
                    org_id: admin.org.clone(),
                    subject: new.subject,
                    profession: new.profession.or_else(|| profession_of(&new.roles)),
                    rpps: new.rpps,
                    roles: new.roles,
                    specialty: new.specialty,
                    since,
                    until: new.until,
                    source: Source::Administrator,
                    version: 1,
                };
                store::insert_member(&mut tx, &member, &admin.subject).await?;
                member
            }
        };
        self.stage(&mut tx, caller, "PutMember", &member.subject)
            .await?;
        tx.commit().await?;
        self.flush().await;
        Ok(member)
    }

    /// Ends a membership of the administrator's organisation at `until` (default now).
    pub async fn end_membership(
        &self,
        caller: &Caller,
        subject: &str,
        until: Option<Timestamp>,
    ) -> Result<Member> {
        let admin = administrator(caller)?;
        let until = until.unwrap_or_else(|| self.now());
        let mut tx = self.base.db().pool().begin().await?;
        let Some(mut member) = store::member_of(&mut tx, &admin.org, subject).await? else {
            drop(tx);
            self.audit(caller, "EndMembership", subject, Outcome::NotFound)
                .await;
            return Err(DirectoryError::NotFound);
        };
        if until < member.since {
            return Err(DirectoryError::invalid(
                "until_time",
                "must not be before the membership's start",
            ));
        }
        member.until = Some(member.until.map_or(until, |current| current.min(until)));
        member.version += 1;
        if !store::update_member(&mut tx, &member, &admin.subject).await? {
            return Err(DirectoryError::VersionMismatch {
                current: member.version - 1,
            });
        }
        self.stage(&mut tx, caller, "EndMembership", subject)
            .await?;
        tx.commit().await?;
        self.flush().await;
        Ok(member)
    }

    /// A member of the caller's organisation.
    pub async fn get_member(&self, caller: &Caller, subject: &str) -> Result<Member> {
        let identity = person(caller)?;
        let mut conn = self.base.db().pool().acquire().await?;
        store::member_of(&mut conn, &identity.org, subject)
            .await?
            .ok_or(DirectoryError::NotFound)
    }

    /// The members of the caller's organisation after `after`, by subject.
    pub async fn list_members(
        &self,
        caller: &Caller,
        role: Option<Role>,
        include_ended: bool,
        after: &str,
        page_size: i64,
    ) -> Result<MemberPage> {
        let identity = person(caller)?;
        let now = self.now();
        let mut conn = self.base.db().pool().acquire().await?;
        let mut members = Vec::new();
        let mut cursor = after.to_owned();
        // Filters are applied after the keyset read; read until the page is full or the org ends.
        loop {
            let batch =
                store::members_of_org(&mut conn, &identity.org, &cursor, page_size + 1).await?;
            let exhausted = batch.len() as i64 <= page_size;
            for member in batch {
                cursor = member.subject.clone();
                let wanted = role.is_none_or(|r| member.roles.contains(&r))
                    && (include_ended || !member.ended_at(now));
                if wanted {
                    members.push(member);
                    if members.len() as i64 > page_size {
                        let last = members[page_size as usize - 1].subject.clone();
                        members.truncate(page_size as usize);
                        return Ok(MemberPage {
                            members,
                            last_subject: Some(last),
                        });
                    }
                }
            }
            if exhausted {
                return Ok(MemberPage {
                    members,
                    last_subject: None,
                });
            }
        }
    }

    /// The active members of `org` among `subjects` (service callers only).
    pub async fn check_members(
        &self,
        caller: &Caller,
        org: &str,
        subjects: &[String],
    ) -> Result<Vec<Member>> {
        if !matches!(caller, Caller::Service(_)) {
            return Err(DirectoryError::PermissionDenied(
                "this call is reserved to the suite's services",
            ));
        }
        let now = self.now();
        let mut conn = self.base.db().pool().acquire().await?;
        let mut active = Vec::new();
        for subject in subjects {
            if let Some(member) = store::member_of(&mut conn, org, subject).await?
                && member.active_at(now)
            {
                active.push(member);
            }
        }
        Ok(active)
    }

    /// The active memberships, in every organisation, of the person holding RPPS number `rpps`
    /// (service to service: sign-in).
    pub async fn find_memberships(&self, caller: &Caller, rpps: &str) -> Result<Vec<Member>> {
        if !matches!(caller, Caller::Service(_)) {
            return Err(DirectoryError::PermissionDenied(
                "this call is reserved to the suite's services",
            ));
        }
        let now = self.now();
        let mut conn = self.base.db().pool().acquire().await?;
        let all = store::members_with_rpps(&mut conn, rpps).await?;
        Ok(all.into_iter().filter(|m| m.active_at(now)).collect())
    }

    async fn stage(
        &self,
        conn: &mut sqlx::AnyConnection,
        caller: &Caller,
        action: &str,
        subject: &str,
    ) -> Result<()> {
        let entry = AuditEntry::new(caller, action, "member", subject, Outcome::Ok);
        audit::stage(conn, &entry).await?;
        Ok(())
    }

    pub(crate) async fn flush(&self) {
        self.base.flush_audit().await;
    }

    async fn audit(&self, caller: &Caller, action: &str, subject: &str, outcome: Outcome) {
        let entry = AuditEntry::new(caller, action, "member", subject, outcome);
        self.base.audit(entry).await;
    }
}

/// The profession a token's roles imply: a doctor or specialist is a physician, a nurse a nurse.
fn profession_of(roles: &[Role]) -> Option<String> {
    if roles
        .iter()
        .any(|r| matches!(r, Role::Doctor | Role::Specialist))
    {
        Some("physician".into())
    } else if roles.contains(&Role::Nurse) {
        Some("nurse".into())
    } else {
        None
    }
}

/// The person behind a call.
pub(crate) fn person(caller: &Caller) -> Result<&Identity> {
    match caller {
        Caller::Person(identity) => Ok(identity),
        Caller::Service(_) => Err(DirectoryError::PermissionDenied(
            "this call needs a person's identity",
        )),
    }
}

/// The administrator behind a call.
pub(crate) fn administrator(caller: &Caller) -> Result<&Identity> {
    let identity = person(caller)?;
    if identity.has_role(Role::Admin) {
        Ok(identity)
    } else {
        Err(DirectoryError::PermissionDenied(
            "only an administrator of the organisation manages its members",
        ))
    }
}
