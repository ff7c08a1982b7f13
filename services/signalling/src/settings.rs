//! The service's configuration is the `[signalling_media]` section of the suite's settings
//! (defined with the rest of the configuration in the kit).

pub use telehealth_kit::config::SignallingSettings;
