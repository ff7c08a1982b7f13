//! The `telehealth` binary's library: assembling the suite's parts into one process.
//!
//! `main.rs` only parses the command line; everything it runs is here so that integration tests
//! can start the real suite in-process (on free ports, in a temporary data directory) exactly as
//! `telehealth up` does.

#![forbid(unsafe_code)]

pub mod backup;
pub mod cli;
pub mod connection;
pub mod data_lock;
pub mod demo;
pub mod demo_care;
pub mod suite;
