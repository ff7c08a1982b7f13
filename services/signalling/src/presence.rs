//! Waiting-room presence: tells scheduling (internal `MarkWaitingRoom`, over internal mTLS) that
//! a patient or nurse joined the room before the doctor, so the doctor's `WatchAppointments`
//! shows the waiting room fill.

use futures::future::BoxFuture;
use telehealth_proto::v1::{self as pb, scheduling_service_client::SchedulingServiceClient};
use tonic::transport::Channel;

use crate::{
    convert,
    core::{Arrival, Presence},
};

/// [`Presence`] through the scheduling service.
pub struct SchedulingPresence {
    channel: Channel,
}

impl SchedulingPresence {
    /// Calls scheduling on `channel` (lazily connected, from `ServiceContext::channel_to`).
    pub fn new(channel: Channel) -> Self {
        SchedulingPresence { channel }
    }
}

impl Presence for SchedulingPresence {
    fn waiting(&self, arrival: Arrival) -> BoxFuture<'static, Result<(), String>> {
        let mut client = SchedulingServiceClient::new(self.channel.clone());
        Box::pin(async move {
            let response = client
                .mark_waiting_room(pb::MarkWaitingRoomRequest {
                    appointment_id: arrival.appointment_id.clone(),
                    room_id: arrival.room_id.clone(),
                    participant_subject: arrival.subject.clone(),
                    participant_role: arrival.role.number(),
                    joined_at: Some(convert::timestamp(arrival.joined_at)),
                })
                .await;
            match response {
                Ok(response) => {
                    let response = response.into_inner();
                    tracing::info!(appointment_id = %arrival.appointment_id, status = response.status, changed = response.changed, "waiting-room arrival reported");
                    Ok(())
                }
                // The appointment is already over or cancelled: nothing to retry.
                Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                    tracing::info!(appointment_id = %arrival.appointment_id, message = status.message(), "scheduling ignores the arrival");
                    Ok(())
                }
                Err(status) => Err(format!("{}: {}", status.code(), status.message())),
            }
        })
    }
}
