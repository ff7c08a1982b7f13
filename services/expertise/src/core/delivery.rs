//! Sending the answer report by secure mail. Every replica looks for due deliveries; each
//! delivery is claimed by one of them for one attempt (a conditional update), the PDF is made
//! from the request, the register's identity for a report and the images' thumbnails, and sent;
//! the attempt's outcome is recorded and audited. Failures that may pass are retried with a
//! growing delay for `retry_for_hours`; the others fail at once, for a person to see.

use jiff::{SignedDuration, Timestamp};
use telehealth_kit::{
    Part,
    audit::{AuditEntry, Outcome},
    config::{MailTls, ReportMailSettings},
    identity::Caller,
};
use telehealth_report as mail;

use super::Expertise;
use crate::{
    delivery::{self, Delivery, DeliveryStatus},
    error::ExpertiseError,
    model::Status,
    report, store,
};

/// Deliveries attempted per round, per replica.
const ROUND: i64 = 20;
/// Side of the thumbnails printed in the report, in pixels.
const THUMBNAIL_SIDE: u32 = 320;

/// The configured submission server, when there is one.
#[derive(Debug, Clone)]
pub struct Mailer {
    config: mail::MailConfig,
    retry_for: SignedDuration,
}

impl Mailer {
    /// The mailer of `settings`; `Ok(None)` when no server is configured. Reads the client
    /// certificate and key now, so a missing file stops the start, not the first answer.
    pub fn from_settings(settings: &ReportMailSettings) -> Result<Option<Mailer>, String> {
        let Some(host) = &settings.host else {
            return Ok(None);
        };
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| format!("report_mail: cannot read {}: {e}", path.display()))
        };
        let client_identity = match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => Some(mail::ClientIdentity {
                cert_chain_pem: read(cert)?,
                key_pem: read(key)?,
            }),
            _ => None,
        };
        let roots = settings
            .ca_file
            .clone()
            .ok_or("report_mail.ca_file is required with report_mail.host")?;
        Ok(Some(Mailer {
            config: mail::MailConfig {
                host: host.clone(),
                port: settings.port,
                tls: match settings.tls {
                    MailTls::Starttls => mail::TlsMode::Starttls,
                    MailTls::Implicit => mail::TlsMode::Implicit,
                },
                server_name: settings.server_name.clone().unwrap_or_else(|| host.clone()),
                roots: mail::Roots::PemFile(roots),
                client_identity,
                sender: settings.sender.clone(),
                helo_name: settings.helo_name.clone(),
                timeout: std::time::Duration::from_secs(settings.timeout_seconds),
            },
            retry_for: SignedDuration::from_hours(
                i64::try_from(settings.retry_for_hours).unwrap_or(48),
            ),
        }))
    }
}

/// Why an attempt did not deliver, and whether trying later may help.
struct Failure {
    reason: String,
    retryable: bool,
}

/// The server refused the address: its reply says why (a 4xx may pass).
fn refused_recipient(refused: &mail::Refused) -> Failure {
    Failure {
        reason: format!("destinataire refusé ({}) : {}", refused.code, refused.text),
        retryable: (400..500).contains(&refused.code),
    }
}

impl Expertise {
    /// The deliveries of a request's report (the caller was already allowed to read it).
    pub async fn deliveries(&self, id: &str) -> Result<Vec<Delivery>, ExpertiseError> {
        let mut conn = self.base.db().pool().acquire().await?;
        store::deliveries_of(&mut conn, id).await
    }

    /// Attempts the deliveries due now through `mailer` (without one, records why they wait);
    /// how many were attempted.
    pub async fn deliver_due(&self, mailer: Option<&Mailer>) -> Result<usize, ExpertiseError> {
        let now = self.now();
        let mut conn = self.base.db().pool().acquire().await?;
        let due = store::due_deliveries(&mut conn, now, ROUND).await?;
        let mut attempted = 0;
        for mut delivery in due {
            let Some(mailer) = mailer else {
                delivery.last_error =
                    "aucun serveur de messagerie sécurisée n'est configuré (report_mail.host)"
                        .into();
                delivery.next_attempt_at = now + SignedDuration::from_hours(1);
                store::save_delivery(&mut conn, &delivery).await?;
                continue;
            };
            if !store::claim_delivery(&mut conn, &delivery, now + delivery::CLAIM).await? {
                continue; // another replica took it
            }
            attempted += 1;
            let outcome = self.attempt(mailer, &delivery, now).await;
            delivery.attempts += 1;
            match outcome {
                Ok(()) => {
                    delivery.status = DeliveryStatus::Delivered;
                    delivery.delivered_at = Some(self.now());
                    delivery.last_error.clear();
                }
                Err(failure) => {
                    let next = self.now() + delivery::backoff(delivery.attempts);
                    let give_up =
                        !failure.retryable || next > delivery.created_at + mailer.retry_for;
                    delivery.status = if give_up {
                        DeliveryStatus::Failed
                    } else {
                        DeliveryStatus::Retrying
                    };
                    delivery.next_attempt_at = next;
                    tracing::warn!(
                        request_id = %delivery.request_id,
                        recipient = delivery.recipient.as_str(),
                        attempts = delivery.attempts,
                        retrying = !give_up,
                        reason = %failure.reason,
                        "answer report not delivered"
                    );
                    delivery.last_error = failure.reason;
                }
            }
            store::save_delivery(&mut conn, &delivery).await?;
            let outcome = match delivery.status {
                DeliveryStatus::Delivered => Outcome::Ok,
                _ => Outcome::Failed,
            };
            let entry = AuditEntry::new(
                &Caller::Service(Part::Expertise),
                format!("DeliverReport:{}", delivery.recipient.as_str()),
                "expertise_request",
                &delivery.request_id,
                outcome,
            );
            self.base.audit(entry).await;
        }
        Ok(attempted)
    }

    /// One attempt: the report made now from the records, sent to one address.
    async fn attempt(&self, mailer: &Mailer, d: &Delivery, now: Timestamp) -> Result<(), Failure> {
        let internal = |what: &str, error: &dyn std::fmt::Display| Failure {
            reason: format!("{what}: {error}"),
            retryable: true,
        };
        let mut conn = self
            .base
            .db()
            .pool()
            .acquire()
            .await
            .map_err(|e| internal("base de données", &e))?;
        let request = store::request(&mut conn, &d.request_id)
            .await
            .map_err(|e| internal("base de données", &e))?
            .filter(|r| matches!(r.status, Status::Answered | Status::Closed))
            .ok_or(Failure {
                reason: "la demande n'est plus répondue".into(),
                retryable: false,
            })?;
        drop(conn);
        let pseudonym = request
            .content
            .patient
            .as_ref()
            .map(|p| p.pseudonym.clone())
            .unwrap_or_default();
        let patient = self
            .consents
            .report_identity(&request.requester_org, &pseudonym)
            .await
            .map_err(|e| match e {
                telehealth_kit::KitError::Unavailable(_) => internal("registre des patients", &e),
                other => Failure {
                    reason: format!("registre des patients : {other}"),
                    retryable: false,
                },
            })?;
        let mut thumbnails = Vec::new();
        for image in self
            .images_of(&request.id)
            .await
            .map_err(|e| internal("images", &e))?
        {
            let stored = self
                .images
                .image(&super::images::target(&request.id), &image.image_id)
                .await
                .map_err(|e| internal("images", &e))?;
            let thumbnail = self
                .images
                .thumbnail(&stored, THUMBNAIL_SIDE)
                .await
                .map_err(|e| internal("vignettes", &e))?;
            thumbnails.push(mail::Thumbnail {
                caption: image.caption.clone(),
                jpeg: thumbnail.jpeg_data,
            });
        }
        let expert_organisation = self
            .rules
            .targets
            .iter()
            .find(|t| t.org_id == request.content.target_org_id)
            .map_or(request.content.target_org_id.clone(), |t| {
                t.org_display_name.clone()
            });
        let content =
            report::expertise_report(&request, &patient, &expert_organisation, thumbnails).ok_or(
                Failure {
                    reason: "le dossier du patient n'a pas de date de naissance valide".into(),
                    retryable: false,
                },
            )?;
        let pdf = mail::render_pdf(&content).map_err(|e| Failure {
            reason: format!("compte rendu : {e}"),
            retryable: false,
        })?;
        let message = report::message(&request, pdf, &mailer.config.sender, &d.address, now);
        let bytes = mail::build_message(&message).map_err(|e| Failure {
            reason: format!("message : {e}"),
            retryable: false,
        })?;
        let delivered = mail::send(
            &mailer.config,
            &mailer.config.sender,
            std::slice::from_ref(&d.address),
            &bytes,
        )
        .await
        .map_err(|e| match &e {
            mail::SendError::AllRecipientsRefused(refused) if !refused.is_empty() => {
                refused_recipient(&refused[0])
            }
            _ => Failure {
                retryable: e.is_retryable(),
                reason: e.to_string(),
            },
        })?;
        match delivered.refused.first() {
            None => Ok(()),
            Some(refused) => Err(refused_recipient(refused)),
        }
    }
}
