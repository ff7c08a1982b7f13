//! Filing a request's images in the answering hospital's PACS. At the answer, one transfer per
//! image is recorded (in the answer's transaction) when the hospital has a destination; every
//! replica then sends what is due: the image's original JPEG, in a DICOM VL Photographic Image
//! with the patient's identity for a report, by C-STORE. Outcomes are recorded and audited;
//! failures that may pass are retried as the report's deliveries are.

use jiff::SignedDuration;
use sqlx::AnyConnection;
use telehealth_dicom as dicom;
use telehealth_kit::{
    Part,
    audit::{AuditEntry, Outcome},
    identity::Caller,
};
use telehealth_proto::v1 as pb;

use super::{Expertise, images};
use crate::{
    delivery::{self, DeliveryStatus},
    error::ExpertiseError,
    filing::{self, PacsTransfer},
    model::{Request, Status},
    store,
};

/// Transfers attempted per round, per replica.
const ROUND: i64 = 10;

/// Why an attempt did not store the image, and whether trying later may help.
struct Failure {
    reason: String,
    retryable: bool,
}

impl Expertise {
    /// Records a transfer for each image of the answered `request` when the answering
    /// hospital files in a PACS (inside the answer's transaction).
    pub(crate) async fn file_images(
        &self,
        tx: &mut AnyConnection,
        request: &Request,
        now: jiff::Timestamp,
    ) -> Result<(), ExpertiseError> {
        let Some(destination) = self.pacs.destination_of(&request.content.target_org_id) else {
            return Ok(());
        };
        let name = filing::destination_name(
            &destination.called_ae_title,
            &destination.host,
            destination.port,
        );
        for image in images::attached(tx, &request.id).await? {
            let transfer = PacsTransfer {
                request_id: request.id.clone(),
                image_id: image.image_id,
                destination: name.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                last_error: String::new(),
                next_attempt_at: now,
                stored_at: None,
                created_at: now,
                sop_instance_uid: String::new(),
            };
            store::insert_transfer(tx, &transfer).await?;
        }
        Ok(())
    }

    /// The PACS transfers of a request's images (the caller was already allowed to read it).
    pub async fn transfers(&self, id: &str) -> Result<Vec<PacsTransfer>, ExpertiseError> {
        let mut conn = self.base.db().pool().acquire().await?;
        store::transfers_of(&mut conn, id).await
    }

    /// Attempts the transfers due now; how many were attempted.
    pub async fn transfer_due(&self) -> Result<usize, ExpertiseError> {
        let now = self.now();
        let mut conn = self.base.db().pool().acquire().await?;
        let due = store::due_transfers(&mut conn, now, ROUND).await?;
        let mut attempted = 0;
        for mut transfer in due {
            if !store::claim_transfer(&mut conn, &transfer, now + delivery::CLAIM).await? {
                continue; // another replica took it
            }
            attempted += 1;
            transfer.attempts += 1;
            match self.send_image(&transfer).await {
                Ok(stored) => {
                    transfer.status = DeliveryStatus::Delivered;
                    transfer.stored_at = Some(self.now());
                    transfer.sop_instance_uid = stored.sop_instance_uid;
                    transfer.last_error.clear();
                }
                Err(failure) => {
                    let next = self.now() + delivery::backoff(transfer.attempts);
                    let period = SignedDuration::from_hours(
                        i64::try_from(self.pacs.retry_for_hours).unwrap_or(48),
                    );
                    let give_up = !failure.retryable || next > transfer.created_at + period;
                    transfer.status = if give_up {
                        DeliveryStatus::Failed
                    } else {
                        DeliveryStatus::Retrying
                    };
                    transfer.next_attempt_at = next;
                    tracing::warn!(
                        request_id = %transfer.request_id,
                        image_id = %transfer.image_id,
                        attempts = transfer.attempts,
                        retrying = !give_up,
                        reason = %failure.reason,
                        "image not stored in the PACS"
                    );
                    transfer.last_error = failure.reason;
                }
            }
            store::save_transfer(&mut conn, &transfer).await?;
            let entry = AuditEntry::new(
                &Caller::Service(Part::Expertise),
                "FileImageInPacs",
                "image",
                &transfer.image_id,
                match transfer.status {
                    DeliveryStatus::Delivered => Outcome::Ok,
                    _ => Outcome::Failed,
                },
            );
            self.base.audit(entry).await;
        }
        Ok(attempted)
    }

    /// One attempt: the DICOM file made now from the records, sent by C-STORE.
    async fn send_image(&self, t: &PacsTransfer) -> Result<dicom::StoreOutcome, Failure> {
        let transient = |what: &str, error: &dyn std::fmt::Display| Failure {
            reason: format!("{what}: {error}"),
            retryable: true,
        };
        let permanent = |reason: String| Failure {
            reason,
            retryable: false,
        };
        let mut conn = self
            .base
            .db()
            .pool()
            .acquire()
            .await
            .map_err(|e| transient("base de données", &e))?;
        let request = store::request(&mut conn, &t.request_id)
            .await
            .map_err(|e| transient("base de données", &e))?
            .filter(|r| matches!(r.status, Status::Answered | Status::Closed))
            .ok_or_else(|| permanent("la demande n'est plus répondue".into()))?;
        let attached = images::attached(&mut conn, &t.request_id)
            .await
            .map_err(|e| transient("images", &e))?;
        drop(conn);
        let (number, image) = attached
            .iter()
            .enumerate()
            .find(|(_, i)| i.image_id == t.image_id)
            .ok_or_else(|| permanent("l'image n'est plus jointe à la demande".into()))?;
        if image.content_type != pb::ImageContentType::Jpeg as i32 {
            return Err(permanent(
                "seules les images JPEG sont classées dans le PACS (image PNG non envoyée)".into(),
            ));
        }
        let destination = self
            .pacs
            .destination_of(&request.content.target_org_id)
            .ok_or_else(|| permanent("plus de PACS configuré pour l'établissement".into()))?;
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
                telehealth_kit::KitError::Unavailable(_) => transient("registre des patients", &e),
                other => permanent(format!("registre des patients : {other}")),
            })?;
        let stored = self
            .images
            .image(&images::target(&request.id), &image.image_id)
            .await
            .map_err(|e| transient("images", &e))?;
        let jpeg = self
            .images
            .read_all(&stored)
            .await
            .map_err(|e| transient("images", &e))?;
        let number = u32::try_from(number + 1).unwrap_or(u32::MAX);
        let file = dicom::vl_photographic(&filing::photo(&request, &patient, image, number, &jpeg))
            .map_err(|e| permanent(format!("conversion DICOM : {e}")))?;
        let target = dicom::PacsDestination {
            host: destination.host.clone(),
            port: destination.port,
            called_ae_title: destination.called_ae_title.clone(),
            calling_ae_title: destination.calling_ae_title.clone(),
            timeout: std::time::Duration::from_secs(destination.timeout_seconds),
        };
        dicom::c_store(&target, &file).await.map_err(|e| Failure {
            retryable: e.is_retryable(),
            reason: e.to_string(),
        })
    }
}
