//! The video rooms of appointments, opened and closed in the signalling service.

use telehealth_proto::v1::{self as pb, signalling_service_client::SignallingServiceClient};
use tonic::transport::Channel;

use crate::{convert, error::SchedulingError, model::Appointment};

/// Internal client of the signalling service (scheduling's own certificate).
#[derive(Clone)]
pub struct Rooms {
    client: SignallingServiceClient<Channel>,
}

/// Why a room is closed (the contract's `RoomCloseReason`).
#[derive(Debug, Clone, Copy)]
pub enum CloseReason {
    Finished,
    Cancelled,
    NoShow,
}

impl Rooms {
    /// Rooms opened through `channel` (to the signalling service).
    pub fn new(channel: Channel) -> Self {
        Rooms {
            client: SignallingServiceClient::new(channel),
        }
    }

    /// Opens (or finds) the room of `appointment` for exactly its participants; returns its id.
    pub async fn open(&self, appointment: &Appointment) -> Result<String, SchedulingError> {
        let mut participants = vec![pb::RoomParticipant {
            subject: appointment.doctor.clone(),
            role: pb::ParticipantRole::Doctor as i32,
        }];
        if let Some(nurse) = &appointment.nurse {
            participants.push(pb::RoomParticipant {
                subject: nurse.clone(),
                role: pb::ParticipantRole::Nurse as i32,
            });
        }
        if let Some(patient) = &appointment.patient_subject {
            participants.push(pb::RoomParticipant {
                subject: patient.clone(),
                role: pb::ParticipantRole::Patient as i32,
            });
        }
        let request = pb::OpenRoomRequest {
            appointment_id: appointment.id.clone(),
            org_id: appointment.org_id.clone(),
            participants,
            scheduled_time: Some(convert::time_range(appointment.time)),
        };
        let response = self.client.clone().open_room(request).await.map_err(|status| {
            tracing::warn!(appointment_id = %appointment.id, %status, "the signalling service did not open the room");
            SchedulingError::Unavailable("the video service is unavailable, retry".into())
        })?;
        Ok(response.into_inner().room_id)
    }

    /// Closes the room of `appointment` (best effort: signalling also closes expired rooms).
    pub async fn close(&self, appointment: &Appointment, reason: CloseReason) {
        let reason = match reason {
            CloseReason::Finished => pb::RoomCloseReason::Finished,
            CloseReason::Cancelled => pb::RoomCloseReason::Cancelled,
            CloseReason::NoShow => pb::RoomCloseReason::NoShow,
        };
        let request = pb::CloseRoomRequest {
            appointment_id: appointment.id.clone(),
            reason: reason as i32,
        };
        if let Err(status) = self.client.clone().close_room(request).await {
            tracing::warn!(appointment_id = %appointment.id, %status, "room not closed; signalling closes it when it expires");
        }
    }
}
