//! The patient register: the people the suite serves, per organisation.
//!
//! A patient belongs to the organisation that registered them and is seen by the organisations
//! their care is shared with. Identity traits, the INS, contact details and the address are
//! sealed field by field (the kit's [`telehealth_kit::sealed`]); exact searches go through
//! keyed blind indexes. The identity status follows the national identity-vigilance rules, and
//! only a qualified identity's INS leaves the organisation. Consents are recorded per act and
//! checked, through the internal `CheckConsent`, by the service where the act happens.
//!
//! - [`ins`]: the matricule INS and its key; [`names`]: how names are compared;
//! - [`model`]: patients, status rules, consents;
//! - [`vault`]: sealing rows and computing blind indexes;
//! - [`core`]: every operation with its authorisation, transaction and audit;
//! - [`store`]: the SQL;
//! - [`convert`] and [`grpc`]: the tonic adapter.

pub mod convert;
pub mod core;
pub mod grpc;
pub mod ins;
pub mod model;
pub mod names;
pub mod store;
pub mod vault;
