//! Filing a tele-expertise request's images in the answering hospital's PACS (`[pacs]`, in the
//! file): one DICOM destination per hospital org. When a specialist of an org with a
//! destination answers, each image of the request is converted to a DICOM VL Photographic Image
//! (the original JPEG inside) and sent by C-STORE, retried while the failure may pass.

use serde::{Deserialize, Serialize};

/// The PACS destinations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PacsSettings {
    /// One per hospital org (`[[pacs.destinations]]`). Default none: nothing is sent.
    pub destinations: Vec<PacsDestinationSettings>,
    /// A transfer that keeps failing for a reason that may pass is retried for this long, in
    /// hours, then given up. Default 48.
    pub retry_for_hours: u64,
}

impl Default for PacsSettings {
    fn default() -> Self {
        PacsSettings {
            destinations: Vec::new(),
            retry_for_hours: 48,
        }
    }
}

/// The PACS of one org.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PacsDestinationSettings {
    /// The hospital org whose answered requests are filed here.
    pub org_id: String,
    /// The PACS's DICOM listener.
    pub host: String,
    /// Usually 104 or 11112.
    pub port: u16,
    /// The PACS's AE title (1 to 16 characters).
    pub called_ae_title: String,
    /// The suite's AE title, declared in the PACS's known modalities (1 to 16 characters).
    /// Default `TELEHEALTH`.
    #[serde(default = "default_calling_ae_title")]
    pub calling_ae_title: String,
    /// Bound on one transfer (connection, association, data, answer), in seconds. Default 60.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

fn default_calling_ae_title() -> String {
    "TELEHEALTH".into()
}

fn default_timeout_seconds() -> u64 {
    60
}

impl PacsSettings {
    /// The destination of `org`, if it has one.
    pub fn destination_of(&self, org: &str) -> Option<&PacsDestinationSettings> {
        self.destinations.iter().find(|d| d.org_id == org)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=24 * 30).contains(&self.retry_for_hours) {
            return Err("retry_for_hours must be 1 to 720".into());
        }
        let ae_title = |t: &str| {
            (1..=16).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        };
        for (i, d) in self.destinations.iter().enumerate() {
            if d.org_id.trim().is_empty() || d.host.trim().is_empty() || d.port == 0 {
                return Err(format!(
                    "destinations[{i}]: org_id, host and port are required"
                ));
            }
            if !ae_title(&d.called_ae_title) || !ae_title(&d.calling_ae_title) {
                return Err(format!(
                    "destinations[{i}]: AE titles are 1 to 16 printable ASCII characters"
                ));
            }
            if !(1..=600).contains(&d.timeout_seconds) {
                return Err(format!(
                    "destinations[{i}]: timeout_seconds must be 1 to 600"
                ));
            }
            if self.destinations[..i].iter().any(|o| o.org_id == d.org_id) {
                return Err(format!("destinations[{i}]: one destination per org"));
            }
        }
        Ok(())
    }
}
