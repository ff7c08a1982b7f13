//! Who may call which RPC: the rules declared in the contract (`(telehealth.v1.access)`),
//! loaded from the descriptor set at start. Anything not in the contract is refused.

use telehealth_kit::identity::{Identity, Role};
use telehealth_proto::{
    access::{AccessPolicy, MethodAccess, MethodRule},
    v1::Role as ProtoRole,
};

use crate::error::GatewayError;

/// The gateway's view of the contract's policy.
pub struct Policy {
    rules: AccessPolicy,
}

impl Policy {
    /// The policy of the contract compiled into the binary.
    pub fn builtin() -> Result<Self, GatewayError> {
        let rules = AccessPolicy::builtin().map_err(|e| GatewayError::Config(e.to_string()))?;
        Ok(Policy { rules })
    }

    /// The rule of the method at `path`; a method the contract does not have is refused.
    pub fn rule(&self, path: &str) -> Result<&MethodRule, GatewayError> {
        self.rules
            .rule(path)
            .ok_or_else(|| GatewayError::UnknownMethod(path.to_owned()))
    }

    /// Decides whether `identity` may call the method at `path`; returns its rule if so.
    pub fn authorize(&self, path: &str, identity: &Identity) -> Result<&MethodRule, GatewayError> {
        let rule = self.rule(path)?;
        match &rule.access {
            MethodAccess::InternalOnly => Err(GatewayError::InternalOnly {
                method: path.to_owned(),
            }),
            // A person with a token may still call them (re-enrol a device, refresh).
            MethodAccess::SignIn | MethodAccess::Device => Ok(rule),
            MethodAccess::Roles(roles) => {
                if roles
                    .iter()
                    .filter_map(|r| kit_role(*r))
                    .any(|r| identity.has_role(r))
                {
                    Ok(rule)
                } else {
                    Err(GatewayError::RoleNotAllowed {
                        method: path.to_owned(),
                    })
                }
            }
        }
    }
}

/// The person role a contract role stands for.
fn kit_role(role: ProtoRole) -> Option<Role> {
    match role {
        ProtoRole::Unspecified => None,
        ProtoRole::Doctor => Some(Role::Doctor),
        ProtoRole::Nurse => Some(Role::Nurse),
        ProtoRole::Specialist => Some(Role::Specialist),
        ProtoRole::Coordinator => Some(Role::Coordinator),
        ProtoRole::Patient => Some(Role::Patient),
        ProtoRole::Admin => Some(Role::Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(roles: &[Role]) -> Identity {
        Identity {
            subject: "s".into(),
            roles: roles.to_vec(),
            org: "o".into(),
            specialty: None,
            cert_thumbprint: "t".into(),
        }
    }

    #[test]
    fn the_contract_decides_and_unknown_methods_are_refused() {
        let policy = Policy::builtin().expect("policy");
        let cases = [
            (
                "/telehealth.v1.WoundService/RecordAssessment",
                Role::Nurse,
                Ok(()),
            ),
            (
                "/telehealth.v1.WoundService/RecordAssessment",
                Role::Patient,
                Err("PermissionDenied"),
            ),
            (
                "/telehealth.v1.SchedulingService/MarkWaitingRoom",
                Role::Admin,
                Err("PermissionDenied"),
            ),
            (
                "/telehealth.v1.WoundService/DropTables",
                Role::Admin,
                Err("Unimplemented"),
            ),
            (
                "/grpc.other.Service/Method",
                Role::Doctor,
                Err("Unimplemented"),
            ),
        ];
        for (path, role, expected) in cases {
            let result = policy
                .authorize(path, &person(&[role]))
                .map(|_| ())
                .map_err(|e| format!("{:?}", e.to_status().code()));
            assert_eq!(result, expected.map_err(str::to_owned), "{path} as {role}");
        }
    }
}
