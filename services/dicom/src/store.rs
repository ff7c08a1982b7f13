//! Sending a file to a PACS with DIMSE C-STORE (PS3.4 annex B, PS3.7 9.1.1) over dicom-ul's
//! tokio association.
//!
//! The file's data set is sent **as it is in the file**: the association proposes exactly the
//! file's SOP class and transfer syntax, so nothing is transcoded (a JPEG cannot be without
//! decoding it) and the PACS stores the bytes we wrote. A PACS that refuses that presentation
//! context gets a permanent error saying so.

use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{
    AssociationRJResult, PDataValue, PDataValueType, Pdu, PresentationContextResultReason,
};

use crate::{Error, scan};

/// A P-DATA PDU's variable field holds one PDV item: 4 bytes of length, the presentation
/// context id and the message control header, then the data.
const PDV_OVERHEAD: usize = 6;

/// Where to send: the PACS's DICOM listener and the AE titles both sides are configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacsDestination {
    pub host: String,
    /// Usually 104 or 11112.
    pub port: u16,
    /// The PACS's AE title (at most 16 characters).
    pub called_ae_title: String,
    /// Ours, as declared in the PACS's list of known modalities.
    pub calling_ae_title: String,
    /// For the whole exchange: connection, association, transfer and response.
    pub timeout: Duration,
}

/// A stored instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOutcome {
    pub sop_instance_uid: String,
    /// The C-STORE status: 0x0000, or a warning (0x0001, 0x0107, 0x0116, 0xBxxx), which PS3.4
    /// counts as stored.
    pub status: u16,
}

/// Why a file did not reach the PACS.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The file itself is not sendable (malformed, unreadable meta information).
    #[error("the file cannot be sent: {0}")]
    File(#[from] Error),
    /// TCP connection, association or transfer failed on the way (network, timeout, abort).
    #[error("PACS unreachable or connection lost: {0}")]
    Network(String),
    /// No answer within [`PacsDestination::timeout`].
    #[error("no answer from the PACS within {0:?}")]
    Timeout(Duration),
    /// The PACS refused the association (unknown AE title, busy...).
    #[error(
        "association rejected by the PACS ({detail}); check the AE titles configured on both sides"
    )]
    Rejected { transient: bool, detail: String },
    /// The PACS does not take this SOP class in this transfer syntax.
    #[error("the PACS does not accept {sop_class} in transfer syntax {transfer_syntax}")]
    NotAccepted {
        sop_class: String,
        transfer_syntax: String,
    },
    /// The PACS answered the C-STORE with a failure status.
    #[error("the PACS refused the image: status 0x{status:04X}{}", comment.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        status: u16,
        comment: Option<String>,
    },
    /// The PACS answered something that is not a C-STORE response.
    #[error("unexpected answer from the PACS: {0}")]
    Protocol(String),
}

impl SendError {
    /// Whether sending the same file again later may work: network trouble, timeouts, a
    /// transient rejection, and "out of resources" (0xA7xx, 0x0213) are; a file or
    /// configuration the PACS refuses (0xA9xx data set mismatch, 0xCxxx cannot understand,
    /// SOP class not supported) is not, and needs a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Network(_) | SendError::Timeout(_) => true,
            SendError::Rejected { transient, .. } => *transient,
            SendError::Status { status, .. } => {
                (0xA700..=0xA7FF).contains(status) || *status == 0x0213
            }
            SendError::File(_) | SendError::NotAccepted { .. } | SendError::Protocol(_) => false,
        }
    }
}

/// Sends `file` (a DICOM Part 10 file, e.g. from [`crate::vl_photographic`]) to `dest`.
pub async fn c_store(dest: &PacsDestination, file: &[u8]) -> Result<StoreOutcome, SendError> {
    // The file is ours or was imported; the walk checks it anyway and finds the data set.
    let layout = scan::walk(file, 16, usize::MAX)?;
    match tokio::time::timeout(dest.timeout, send(dest, file, &layout)).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Timeout(dest.timeout)),
    }
}

async fn send(
    dest: &PacsDestination,
    file: &[u8],
    layout: &scan::Layout,
) -> Result<StoreOutcome, SendError> {
    let mut association = ClientAssociationOptions::new()
        .calling_ae_title(dest.calling_ae_title.as_str())
        .called_ae_title(dest.called_ae_title.as_str())
        .with_presentation_context(
            layout.sop_class.as_str(),
            vec![layout.transfer_syntax.as_str()],
        )
        .connection_timeout(dest.timeout)
        .read_timeout(dest.timeout)
        .write_timeout(dest.timeout)
        .establish_async((dest.host.as_str(), dest.port))
        .await
        .map_err(association_error)?;
    let context = association
        .presentation_contexts()
        .iter()
        .find(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && pc.transfer_syntax.trim_end_matches('\0') == layout.transfer_syntax
        })
        .map(|pc| pc.id);
    let Some(context) = context else {
        let _ = association.abort().await;
        return Err(SendError::NotAccepted {
            sop_class: layout.sop_class.clone(),
            transfer_syntax: layout.transfer_syntax.clone(),
        });
    };

    let command = store_request(&layout.sop_class, &layout.sop_instance)?;
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .await
        .map_err(|error| SendError::Network(error.to_string()))?;
    // The data set straight from the file, in P-DATA PDUs no larger than the PACS accepts.
    // (dicom-ul's streaming writer is not used: its `Drop` blocks in place, which panics on a
    // current-thread runtime.)
    let dataset = &file[layout.dataset_start..];
    let chunk = match association.acceptor_max_pdu_length() {
        0 => 1 << 20, // no limit announced
        max => (max as usize).saturating_sub(PDV_OVERHEAD).max(1),
    };
    let mut pieces = dataset.chunks(chunk).peekable();
    while let Some(piece) = pieces.next() {
        association
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context,
                    value_type: PDataValueType::Data,
                    is_last: pieces.peek().is_none(),
                    data: piece.to_vec(),
                }],
            })
            .await
            .map_err(|error| SendError::Network(snafu_chain(&error)))?;
    }

    let response = receive_command(&mut association).await?;
    let status = response
        .element(tags::STATUS)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok())
        .ok_or_else(|| SendError::Protocol("C-STORE response without a status".into()))?;
    let _ = association.release().await;
    match status {
        0x0000 | 0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF => Ok(StoreOutcome {
            sop_instance_uid: layout.sop_instance.clone(),
            status,
        }),
        _ => Err(SendError::Status {
            status,
            comment: response
                .element(tags::ERROR_COMMENT)
                .ok()
                .and_then(|e| e.to_str().ok())
                .map(|c| c.trim().to_owned()),
        }),
    }
}

/// Collects the command fragments of the response and decodes them.
async fn receive_command<S>(
    association: &mut dicom_ul::association::AsyncClientAssociation<S>,
) -> Result<InMemDicomObject, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let mut command = Vec::new();
    loop {
        match association.receive().await.map_err(association_error)? {
            Pdu::PData { data } => {
                for value in data {
                    if value.value_type == PDataValueType::Command {
                        command.extend_from_slice(&value.data);
                        if value.is_last {
                            return InMemDicomObject::read_dataset_with_ts(
                                command.as_slice(),
                                &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN
                                    .erased(),
                            )
                            .map_err(|error| SendError::Protocol(error.to_string()));
                        }
                    }
                }
            }
            Pdu::AbortRQ { source } => {
                return Err(SendError::Network(format!(
                    "association aborted by the PACS ({source:?})"
                )));
            }
            other => {
                return Err(SendError::Protocol(other.short_description().to_string()));
            }
        }
    }
}

/// C-STORE-RQ (PS3.7 9.3.1.1), implicit VR little endian as every DIMSE command.
fn store_request(sop_class: &str, sop_instance: &str) -> Result<Vec<u8>, SendError> {
    let mut command = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| {
        command.put(DataElement::new(tag, vr, value));
    };
    put(tags::AFFECTED_SOP_CLASS_UID, VR::UI, sop_class.into());
    put(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(0x0001u16));
    put(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(1u16));
    put(tags::PRIORITY, VR::US, PrimitiveValue::from(0x0000u16));
    // 0x0000: a data set follows (0x0101 would mean none).
    put(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        PrimitiveValue::from(0x0000u16),
    );
    put(tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, sop_instance.into());
    let syntax = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut body = Vec::with_capacity(256);
    command
        .write_dataset_with_ts(&mut body, &syntax)
        .map_err(|error| SendError::File(Error::Encode(error.to_string())))?;
    // Command Group Length (0000,0000) UL comes first and counts the bytes after it.
    let length =
        u32::try_from(body.len()).map_err(|_| SendError::Protocol("command too long".into()))?;
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn association_error(error: dicom_ul::association::Error) -> SendError {
    use dicom_ul::association::Error as E;
    match error {
        E::Rejected { association_rj, .. } => SendError::Rejected {
            transient: association_rj.result == AssociationRJResult::Transient,
            detail: format!("{:?}", association_rj.source),
        },
        E::NoAcceptedPresentationContexts { .. } => SendError::Protocol(
            "the PACS accepted no presentation context for this SOP class and transfer syntax"
                .into(),
        ),
        other => SendError::Network(snafu_chain(&other)),
    }
}

/// The error with its causes, `: `-separated (dicom-ul's messages alone are terse).
fn snafu_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_network_are_retryable_data_set_errors_are_not() {
        let status = |status| SendError::Status {
            status,
            comment: None,
        };
        let cases = [
            (status(0xA700), true, "out of resources"),
            (status(0xA7FF), true, "out of resources, vendor detail"),
            (status(0x0213), true, "resource limitation"),
            (status(0xA900), false, "data set does not match SOP class"),
            (status(0xC000), false, "cannot understand"),
            (status(0x0122), false, "SOP class not supported"),
            (SendError::Network("reset".into()), true, "network"),
            (SendError::Timeout(Duration::from_secs(1)), true, "timeout"),
            (
                SendError::Rejected {
                    transient: true,
                    detail: String::new(),
                },
                true,
                "transient rejection",
            ),
            (
                SendError::Rejected {
                    transient: false,
                    detail: String::new(),
                },
                false,
                "permanent rejection",
            ),
            (
                SendError::NotAccepted {
                    sop_class: String::new(),
                    transfer_syntax: String::new(),
                },
                false,
                "presentation context refused",
            ),
        ];
        for (error, retryable, case) in cases {
            assert_eq!(error.is_retryable(), retryable, "{case}");
        }
    }

    #[test]
    fn the_store_request_starts_with_its_group_length() {
        let command = store_request("1.2.3", "4.5.6").expect("a command");
        let length = u32::from_le_bytes([command[8], command[9], command[10], command[11]]);
        assert_eq!(length as usize, command.len() - 12);
        assert_eq!(&command[..4], &[0, 0, 0, 0], "(0000,0000) first");
    }
}
