//! The access rules declared on each RPC, read from the descriptor set.
//!
//! The gateway builds its authorisation table from [`AccessPolicy::from_descriptor_set`] when it
//! starts, so the contract and its policy can never drift apart. Any method that is not in the
//! table (an unknown service, a new RPC someone forgot to annotate) is denied.

use std::collections::BTreeMap;

use prost_reflect::{DescriptorPool, Value};

use crate::v1::{AccessRule, Role};

/// Full name of the method option that carries an RPC's access rule.
pub const ACCESS_OPTION: &str = "telehealth.v1.access";

/// Why the access policy could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("descriptor set does not decode: {0}")]
    Descriptor(#[from] prost_reflect::DescriptorError),
    #[error("descriptor set does not declare the `{ACCESS_OPTION}` method option")]
    MissingExtension,
    #[error("rpc {method} has no `{ACCESS_OPTION}` rule")]
    MissingRule { method: String },
    #[error("rpc {method} has an invalid access rule: {reason}")]
    InvalidRule { method: String, reason: String },
}

/// Who may call one RPC, as declared in the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodAccess {
    /// Callable through the gateway by a person holding any of these roles.
    Roles(Vec<Role>),
    /// Callable only by the suite's own services, never through the gateway.
    InternalOnly,
}

/// What the gateway needs to know about one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRule {
    /// Who may call it.
    pub access: MethodAccess,
    /// True for client-, server- or bidirectional-streaming RPCs (they get the longer deadline).
    pub streaming: bool,
}

/// The access rule of every RPC of the contract, keyed by gRPC path
/// (`/telehealth.v1.SchedulingService/BookAppointment`).
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    rules: BTreeMap<String, MethodRule>,
}

impl AccessPolicy {
    /// Reads the policy of every service in `descriptor_set` (an encoded `FileDescriptorSet`).
    ///
    /// Fails if any RPC of a `telehealth.*` service lacks a rule or declares a contradictory one:
    /// a contract with a hole in its policy must not start.
    pub fn from_descriptor_set(descriptor_set: &[u8]) -> Result<Self, PolicyError> {
        let pool = DescriptorPool::decode(descriptor_set)?;
        let extension = pool
            .get_extension_by_name(ACCESS_OPTION)
            .ok_or(PolicyError::MissingExtension)?;

        let mut rules = BTreeMap::new();
        for service in pool.services() {
            if !service.full_name().starts_with("telehealth.") {
                continue;
            }
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                let options = method.options();
                if !options.has_extension(&extension) {
                    return Err(PolicyError::MissingRule { method: path });
                }
                let rule = match options.get_extension(&extension).as_ref() {
                    Value::Message(message) => {
                        message.transcode_to::<AccessRule>().map_err(|e| {
                            PolicyError::InvalidRule {
                                method: path.clone(),
                                reason: e.to_string(),
                            }
                        })?
                    }
                    _ => {
                        return Err(PolicyError::InvalidRule {
                            method: path,
                            reason: "the option is not an AccessRule message".into(),
                        });
                    }
                };
                let access = method_access(&path, &rule)?;
                let streaming = method.is_client_streaming() || method.is_server_streaming();
                rules.insert(path, MethodRule { access, streaming });
            }
        }
        Ok(Self { rules })
    }

    /// The policy of the contract compiled into this crate.
    pub fn builtin() -> Result<Self, PolicyError> {
        Self::from_descriptor_set(crate::FILE_DESCRIPTOR_SET)
    }

    /// The rule of the method at `path`, or `None` if the contract has no such method.
    pub fn rule(&self, path: &str) -> Option<&MethodRule> {
        self.rules.get(path)
    }

    /// Every method path and its rule, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MethodRule)> {
        self.rules.iter().map(|(path, rule)| (path.as_str(), rule))
    }

    /// Number of methods in the policy.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the contract declares no method at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn method_access(path: &str, rule: &AccessRule) -> Result<MethodAccess, PolicyError> {
    let invalid = |reason: &str| PolicyError::InvalidRule {
        method: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut roles = Vec::with_capacity(rule.roles.len());
    for raw in &rule.roles {
        match Role::try_from(*raw) {
            Ok(Role::Unspecified) | Err(_) => return Err(invalid("unknown or unspecified role")),
            Ok(role) => roles.push(role),
        }
    }
    match (rule.internal_only, roles.is_empty()) {
        (true, true) => Ok(MethodAccess::InternalOnly),
        (true, false) => Err(invalid("internal_only rules must not list roles")),
        (false, true) => Err(invalid(
            "no role may call it; list roles or set internal_only",
        )),
        (false, false) => Ok(MethodAccess::Roles(roles)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_contract_has_a_valid_access_rule() {
        // from_descriptor_set refuses a contract with any RPC lacking a rule.
        let policy = AccessPolicy::builtin().expect("the contract's policy must be complete");
        for service in [
            "SchedulingService",
            "ExpertiseService",
            "WoundService",
            "SignallingService",
        ] {
            let prefix = format!("/telehealth.v1.{service}/");
            let methods = policy
                .iter()
                .filter(|(path, _)| path.starts_with(&prefix))
                .count();
            assert!(
                methods > 0,
                "{service} should declare RPCs with access rules"
            );
        }
    }

    #[test]
    fn an_rpc_without_a_rule_is_reported_by_name() {
        let source = r#"
            syntax = "proto3";
            package telehealth.v1;
            import "telehealth/v1/access.proto";
            message PingRequest {}
            message PingResponse {}
            service Probe {
              rpc Guarded(PingRequest) returns (PingResponse) {
                option (telehealth.v1.access) = { roles: [ROLE_DOCTOR] };
              }
              rpc Forgotten(PingRequest) returns (PingResponse);
            }
        "#;
        let error = AccessPolicy::from_descriptor_set(&compile_with_access(source))
            .expect_err("a missing rule must be refused");
        assert!(
            matches!(&error, PolicyError::MissingRule { method } if method == "/telehealth.v1.Probe/Forgotten"),
            "unexpected error: {error}"
        );
    }

    #[test]
    fn contradictory_rules_are_refused() {
        for (rule, case) in [
            (
                "{ internal_only: true, roles: [ROLE_NURSE] }",
                "internal with roles",
            ),
            ("{ }", "nobody may call"),
            ("{ roles: [ROLE_UNSPECIFIED] }", "unspecified role"),
        ] {
            let source = format!(
                r#"syntax = "proto3";
                package telehealth.v1;
                import "telehealth/v1/access.proto";
                message PingRequest {{}}
                message PingResponse {{}}
                service Probe {{
                  rpc Ping(PingRequest) returns (PingResponse) {{ option (telehealth.v1.access) = {rule}; }}
                }}"#
            );
            let result = AccessPolicy::from_descriptor_set(&compile_with_access(&source));
            assert!(
                matches!(result, Err(PolicyError::InvalidRule { .. })),
                "{case}: expected InvalidRule, got {result:?}"
            );
        }
    }

    /// Compiles `source` next to the real `access.proto` and returns the encoded descriptor set.
    fn compile_with_access(source: &str) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("telehealth-policy-{}", uuid_like()));
        let v1 = dir.join("telehealth/v1");
        std::fs::create_dir_all(&v1).expect("temp dir");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/telehealth/v1/access.proto"),
            v1.join("access.proto"),
        )
        .expect("copy access.proto");
        std::fs::write(v1.join("probe.proto"), source).expect("write probe.proto");
        let mut compiler = protox::Compiler::new([&dir]).expect("include dir");
        compiler.include_imports(true);
        compiler
            .open_file("telehealth/v1/probe.proto")
            .expect("probe compiles");
        std::fs::remove_dir_all(&dir).ok();
        compiler.encode_file_descriptor_set()
    }

    fn uuid_like() -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }
}
