//! What every telehealth service shares.
//!
//! Each service crate (scheduling, expertise, wound, signalling, directory) is a thin domain core plus a
//! tonic adapter; everything around them lives here, so that all of them behave the same way:
//!
//! - [`config`]: one typed configuration, from defaults, a TOML file and `TELEHEALTH_*` env;
//! - [`db`]: SQLite or PostgreSQL behind one pool type, per-service migrations;
//! - [`tls`]: internal mTLS (rustls) and the TLS accept loop;
//! - [`identity`]: the caller as the gateway vouches for it, refused without it;
//! - [`directory`]: membership checks against the care directory (who may be named);
//! - [`consent`]: the patient's consent, checked against the patient register where the act happens;
//! - [`error`]: the restricted error codes and the one mapping to `tonic::Status`;
//! - [`events`]: change notifications for watch streams, across replicas (LISTEN/NOTIFY);
//! - [`ids`]: identifiers as the contract states them (`Subject`);
//! - [`idempotency`]: idempotency keys: replay of the first answer, conflicts, purge;
//! - [`paging`]: the signed page tokens of every paginated list;
//! - [`watch`]: the shape of every watch stream (ready, events, heartbeats, end on shutdown);
//! - [`audit`]: the append-only, hash-chained audit trail and its verification;
//! - [`telemetry`]: `tracing` logs, OpenTelemetry traces, W3C trace context;
//! - [`trace_id`]: the current request's trace id, quoted by errors and audit records;
//! - [`health`]: `grpc.health.v1` with readiness following the database;
//! - [`message_limit`]: each RPC's largest request message, checked before decoding;
//! - [`serve`]: running a service with graceful drain on shutdown;
//! - [`service_core`]: the database, clock and audit writer every service's core holds;
//! - [`pki`], [`token`]: the development PKI and tokens `telehealth up` creates;
//! - [`sealed`]: field-by-field encryption of personal data and keyed blind indexes;
//! - [`record`]: who acted, instants and JSON columns, as every service stores and shows them;
//! - [`raw_codec`]: a pass-through gRPC codec for pre-encoded messages.
//!
//! The image pipeline is its own crate, `telehealth-images`, built on this one; its settings
//! (`[blobs]`, `[images]` in [`config`]) and its tables (migration `0002_images`) stay here.

#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod consent;
pub mod db;
pub mod directory;
pub mod error;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod message_limit;
pub mod metrics;
pub mod paging;
pub mod part;
pub mod pki;
pub mod raw_codec;
pub mod record;
pub mod sealed;
pub mod serve;
pub mod service_core;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod token;
pub mod trace_id;
pub mod watch;

pub use config::Settings;
pub use db::Database;
pub use error::{ApiError, ErrorCode, KitError};
pub use part::Part;
