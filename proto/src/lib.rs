//! The telehealth API contract.
//!
//! The `.proto` files under `telehealth/v1/` are the single source of truth for the API *and*
//! its access policy: every RPC declares who may call it with the `(telehealth.v1.access)`
//! method option. This crate exports:
//!
//! - [`v1`]: the generated messages, clients and servers;
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptor set (for server reflection and policy);
//! - [`access`]: the per-RPC access rules read back from that descriptor set.

#![forbid(unsafe_code)]

pub mod access;

/// Generated code for the `telehealth.v1` package.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("telehealth.v1");
}

/// The encoded `FileDescriptorSet` of every `.proto` file of the contract, imports included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/telehealth_descriptor.bin"));

/// The protobuf package every service of the suite lives in.
pub const PACKAGE: &str = "telehealth.v1";
