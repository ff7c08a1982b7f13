//! The access rules declared on each RPC, read from the descriptor set.
//!
//! The gateway builds its authorisation table from [`AccessPolicy::from_descriptor_set`] when it
//! starts, so the contract and its policy can never drift apart. Any method that is not in the
//! table (an unknown service, a new RPC someone forgot to annotate) is denied. The same table
//! gives each RPC's largest request message, which the gateway and the services enforce before
//! buffering or decoding it.

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
    #[error("rpc {method} declares no max_request_bytes in its `{ACCESS_OPTION}` rule")]
    MissingRequestLimit { method: String },
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
    /// Sign-in and enrolment: callable without a token, and without a client certificate on
    /// the gateway's sign-in port.
    SignIn,
    /// Callable with an enrolled device's certificate and no token (refresh).
    Device,
}

/// What the gateway needs to know about one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodRule {
    /// Who may call it.
    pub access: MethodAccess,
    /// True for client-, server- or bidirectional-streaming RPCs (they get the longer deadline).
    pub streaming: bool,
    /// Largest request message, in bytes (the gRPC length prefix).
    pub max_request_bytes: u32,
}

/// No RPC may declare a larger `max_request_bytes` (a misplaced digit must not open the door to
/// messages that decode into gigabytes).
pub const MAX_REQUEST_BYTES_CEILING: u32 = 4 * 1024 * 1024;

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
                let max_request_bytes = request_limit(&path, &rule)?;
                let streaming = method.is_client_streaming() || method.is_server_streaming();
                rules.insert(
                    path,
                    MethodRule {
                        access,
                        streaming,
                        max_request_bytes,
                    },
                );
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

    /// The largest request message of the method at `path`, if the contract has it.
    pub fn max_request_bytes(&self, path: &str) -> Option<u32> {
        self.rules.get(path).map(|rule| rule.max_request_bytes)
    }

    /// The largest `max_request_bytes` of any method (0 for an empty policy).
    pub fn largest_request_bytes(&self) -> u32 {
        self.rules
            .values()
            .map(|rule| rule.max_request_bytes)
            .max()
            .unwrap_or(0)
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

fn request_limit(path: &str, rule: &AccessRule) -> Result<u32, PolicyError> {
    match rule.max_request_bytes {
        0 => Err(PolicyError::MissingRequestLimit {
            method: path.to_owned(),
        }),
        n if n > MAX_REQUEST_BYTES_CEILING => Err(PolicyError::InvalidRule {
            method: path.to_owned(),
            reason: format!(
                "max_request_bytes {n} is above the {MAX_REQUEST_BYTES_CEILING} allowed"
            ),
        }),
        n => Ok(n),
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
    let kinds = [rule.internal_only, rule.sign_in, rule.device];
    if kinds.iter().filter(|set| **set).count() > 1 {
        return Err(invalid(
            "internal_only, sign_in and device exclude one another",
        ));
    }
    let access = if rule.internal_only {
        MethodAccess::InternalOnly
    } else if rule.sign_in {
        MethodAccess::SignIn
    } else if rule.device {
        MethodAccess::Device
    } else if roles.is_empty() {
        return Err(invalid(
            "no role may call it; list roles or set internal_only, sign_in or device",
        ));
    } else {
        return Ok(MethodAccess::Roles(roles));
    };
    if roles.is_empty() {
        Ok(access)
    } else {
        Err(invalid(
            "internal_only, sign_in and device rules must not list roles",
        ))
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
            "DirectoryService",
            "AuthService",
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
                option (telehealth.v1.access) = { roles: [ROLE_DOCTOR], max_request_bytes: 1024 };
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
                "{ internal_only: true, roles: [ROLE_NURSE], max_request_bytes: 1024 }",
                "internal with roles",
            ),
            ("{ max_request_bytes: 1024 }", "nobody may call"),
            (
                "{ roles: [ROLE_UNSPECIFIED], max_request_bytes: 1024 }",
                "unspecified role",
            ),
            (
                "{ sign_in: true, roles: [ROLE_DOCTOR], max_request_bytes: 1024 }",
                "sign-in with roles",
            ),
            (
                "{ sign_in: true, device: true, max_request_bytes: 1024 }",
                "sign-in and device at once",
            ),
            (
                "{ device: true, internal_only: true, max_request_bytes: 1024 }",
                "device and internal at once",
            ),
            (
                "{ roles: [ROLE_NURSE], max_request_bytes: 4194305 }",
                "a request limit above the ceiling",
            ),
        ] {
            let source = probe_with_rule(rule);
            let result = AccessPolicy::from_descriptor_set(&compile_with_access(&source));
            assert!(
                matches!(result, Err(PolicyError::InvalidRule { .. })),
                "{case}: expected InvalidRule, got {result:?}"
            );
        }
    }

    #[test]
    fn an_rpc_without_a_request_limit_is_refused_by_name() {
        for rule in [
            "{ roles: [ROLE_NURSE] }",
            "{ internal_only: true }",
            "{ roles: [ROLE_NURSE], max_request_bytes: 0 }",
        ] {
            let source = probe_with_rule(rule);
            let error = AccessPolicy::from_descriptor_set(&compile_with_access(&source))
                .expect_err("a rule without max_request_bytes must be refused");
            assert!(
                matches!(&error, PolicyError::MissingRequestLimit { method } if method == "/telehealth.v1.Probe/Ping"),
                "{rule}: unexpected error: {error}"
            );
        }
    }

    #[test]
    fn every_rpc_of_the_contract_declares_a_request_limit_that_fits_its_kind() {
        let policy = AccessPolicy::builtin().expect("policy");
        let limit = |path: &str| policy.max_request_bytes(path).expect(path);
        assert_eq!(limit("/telehealth.v1.WoundService/GetWound"), 64 * 1024);
        assert_eq!(
            limit("/telehealth.v1.WoundService/UploadPhoto"),
            1024 * 1024 + 64 * 1024,
            "an upload chunk of 1 MiB and its envelope"
        );
        assert_eq!(
            limit("/telehealth.v1.ExpertiseService/AttachImage"),
            1024 * 1024 + 64 * 1024
        );
        assert_eq!(limit("/telehealth.v1.SignallingService/Signal"), 128 * 1024);
        assert_eq!(
            limit("/telehealth.v1.DirectoryService/CheckMembers"),
            64 * 1024
        );
        assert_eq!(policy.largest_request_bytes(), 1024 * 1024 + 64 * 1024);
    }

    #[test]
    fn only_sign_in_rpcs_go_without_a_token() {
        let policy = AccessPolicy::builtin().expect("policy");
        let tokenless: Vec<&str> = policy
            .iter()
            .filter(|(_, rule)| matches!(rule.access, MethodAccess::SignIn | MethodAccess::Device))
            .map(|(path, _)| path)
            .collect();
        assert!(
            tokenless
                .iter()
                .all(|path| path.starts_with("/telehealth.v1.AuthService/")),
            "{tokenless:?}"
        );
        assert_eq!(
            policy
                .rule("/telehealth.v1.AuthService/Refresh")
                .map(|r| &r.access),
            Some(&MethodAccess::Device)
        );
        assert_eq!(
            policy
                .rule("/telehealth.v1.AuthService/StartDeviceSignIn")
                .map(|r| &r.access),
            Some(&MethodAccess::SignIn)
        );
    }

    fn probe_with_rule(rule: &str) -> String {
        format!(
            r#"syntax = "proto3";
            package telehealth.v1;
            import "telehealth/v1/access.proto";
            message PingRequest {{}}
            message PingResponse {{}}
            service Probe {{
              rpc Ping(PingRequest) returns (PingResponse) {{ option (telehealth.v1.access) = {rule}; }}
            }}"#
        )
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
