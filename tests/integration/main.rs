//! Integration tests of the `telehealth` binary and the suite it runs.
//!
//! One test crate (one link step): each module is a group of tests. They drive the real binary
//! (`CARGO_BIN_EXE_telehealth`) or the library entry points it uses, with real certificates,
//! real TLS and real databases in temporary data directories.

mod backup;
mod cli;
mod cross_org;
mod directory;
mod drills;
mod expertise;
mod fhir;
mod gateway_auth;
mod gateway_connections;
mod gateway_limits;
mod gateway_logs;
mod gateway_proxy;
mod gateway_surface;
mod grpc_web;
mod harness;
mod images;
mod k8s;
mod metrics;
mod migrations;
mod pacs;
mod patients;
mod pki_and_tokens;
mod replicas;
mod report_mail;
mod right_of_access;
mod scheduling;
mod sign_in;
mod signalling;
mod soak;
mod tracing;
mod up;
mod wound;
