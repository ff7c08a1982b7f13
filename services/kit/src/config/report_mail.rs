//! Delivery of the tele-expertise answer report by secure mail (`[report_mail]`,
//! `TELEHEALTH_REPORT_MAIL__…`): the MSSanté operator's submission server, the application
//! mailbox that sends, and its certificate. Unset `host`: reports are not mailed (each delivery
//! stays pending with the reason, visible on the request).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the connection to the submission server is secured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// SMTP submission with STARTTLS (port 587); nothing is sent before TLS.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// The secure mail server reports are sent through.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReportMailSettings {
    /// Host name of the submission server. Default unset: reports are not mailed.
    pub host: Option<String>,
    /// Its port. Default 587.
    pub port: u16,
    /// `starttls` (default) or `implicit`.
    pub tls: MailTls,
    /// The name in the server's certificate. Default: `host`.
    pub server_name: Option<String>,
    /// The CA certificates (PEM) the server's certificate must chain to (for MSSanté: the IGC
    /// Santé roots). Required with `host`.
    pub ca_file: Option<PathBuf>,
    /// The application mailbox's certificate chain (PEM), presented in the TLS handshake: how
    /// MSSanté authenticates the sender. With `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM). A secret: mount it from a secret store, mode 0600.
    pub key_file: Option<PathBuf>,
    /// The sending mailbox's address (`From` and envelope sender). Required with `host`.
    pub sender: String,
    /// The name the client gives in `EHLO`. Default `telehealth`.
    pub helo_name: String,
    /// Each step of a submission (connection, each command) must finish within this, in
    /// seconds. Default 30.
    pub timeout_seconds: u64,
    /// A delivery that keeps failing for a reason that may pass is retried for this long, in
    /// hours, then given up (and shown as failed). Default 48.
    pub retry_for_hours: u64,
    /// How often each replica looks for reports to send, in seconds. Default 30.
    pub interval_seconds: u64,
}

impl Default for ReportMailSettings {
    fn default() -> Self {
        ReportMailSettings {
            host: None,
            port: 587,
            tls: MailTls::Starttls,
            server_name: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            sender: String::new(),
            helo_name: "telehealth".into(),
            timeout_seconds: 30,
            retry_for_hours: 48,
            interval_seconds: 30,
        }
    }
}

impl ReportMailSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=600).contains(&self.timeout_seconds) {
            return Err("timeout_seconds must be 1 to 600".into());
        }
        if !(1..=24 * 30).contains(&self.retry_for_hours) {
            return Err("retry_for_hours must be 1 to 720".into());
        }
        if !(1..=3600).contains(&self.interval_seconds) {
            return Err("interval_seconds must be 1 to 3600".into());
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("cert_file and key_file go together".into());
        }
        if self.host.is_some() {
            if self.port == 0 {
                return Err("port must not be 0".into());
            }
            if self.ca_file.is_none() {
                return Err("ca_file is required with host (the server's CA roots)".into());
            }
            if !self.sender.contains('@') {
                return Err("sender (the sending mailbox's address) is required with host".into());
            }
        }
        Ok(())
    }
}
