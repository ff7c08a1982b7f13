//! The one harness of the integration tests and benchmarks: it starts the real suite and hands
//! out clients that call it as a given person, with a device certificate and a bound token.
//!
//! - [`suite`]: the whole suite in this process, on SQLite or PostgreSQL ([`suite::backends`]),
//!   with typed clients per person;
//! - [`cluster`]: microservice mode, each service replicated in its own `telehealth serve`
//!   process behind a gateway process, on PostgreSQL and S3;
//! - [`child`]: the suite in a child process, for benchmarks that measure its memory;
//! - [`harness`], [`echo`], [`codec`]: the gateway alone in front of echo backends (it forwards
//!   calls without decoding them, so its transport is tested with opaque payloads);
//! - [`measure`]: percentiles for benchmarks;
//! - [`faults`]: a TCP link between a gateway and a service that delays, holds back or cuts;
//! - [`postgres`], [`garage`]: a PostgreSQL server and an S3 store of the test's own, to stop
//!   and start;
//! - [`ports`]: ports for the processes a test starts, outside the kernel's ephemeral range
//!   (the kit's, which the services' own tests use too).

pub mod child;
pub mod cluster;
pub mod codec;
pub mod echo;
pub mod faults;
pub mod garage;
pub mod harness;
pub mod measure;
pub mod oidc;
pub mod postgres;
pub mod suite;

/// Shared with the services' own tests, hence in the kit.
pub use telehealth_kit::testing::ports;

pub use codec::RawCodec;
