//! Support for the integration tests and benchmarks of the gateway.
//!
//! The gateway forwards calls without decoding them, so its transport is tested with opaque
//! payloads: [`RawCodec`] sends and receives bytes, [`echo`] is a backend that answers on the
//! paths of real services (behind real internal mTLS and the real identity interceptor) and
//! reports what it received, and [`harness`] starts a gateway in front of it with a fresh dev
//! PKI and signing key.

pub mod codec;
pub mod echo;
pub mod harness;
pub mod measure;

pub use codec::RawCodec;
