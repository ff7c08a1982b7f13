//! The tonic adapter: each RPC converts its request (validating it), calls the core, converts
//! the result back. `Signal` runs the core's session in its own task and streams its events.
//! No rule lives here.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use telehealth_kit::{
    error::reply,
    identity::require_caller,
    page_scope,
    paging::{self, PageTokens},
};
use telehealth_proto::v1::{self as pb, signalling_service_server::SignallingService};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    convert,
    core::{Link, Signalling},
    domain::{self, ServerEvent},
    error::SignallingError,
};

/// The gRPC face of [`Signalling`].
pub struct SignallingApi {
    core: Signalling,
    pages: PageTokens,
}

impl SignallingApi {
    /// The API over `core`, paging with `pages`.
    pub fn new(core: Signalling, pages: PageTokens) -> Self {
        SignallingApi { core, pages }
    }
}

type SignalStream = Pin<Box<dyn Stream<Item = Result<pb::SignalResponse, Status>> + Send>>;

/// The response stream of `Signal`: the session's events, numbered from 1, then the status the
/// session ended with.
fn events(receiver: mpsc::Receiver<ServerEvent>, link: Arc<Link>) -> SignalStream {
    struct State {
        receiver: mpsc::Receiver<ServerEvent>,
        link: Arc<Link>,
        sequence: u64,
        done: bool,
    }
    let state = State {
        receiver,
        link,
        sequence: 0,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        // Queued events first: a stream that ends still delivers what preceded its end
        // (`replaced`, `room_closed`, the last errors).
        let next = tokio::select! {
            biased;
            event = s.receiver.recv() => event,
            () = s.link.killed().cancelled() => s.receiver.try_recv().ok(),
        };
        match next {
            Some(event) => {
                s.sequence += 1;
                let response = convert::event(event, s.sequence);
                Some((Ok(response), s))
            }
            None => {
                s.done = true;
                match s.link.take_ending() {
                    Some(Err(error)) => Some((Err(convert::stream_status(&error)), s)),
                    _ => None,
                }
            }
        }
    }))
}

#[tonic::async_trait]
impl SignallingService for SignallingApi {
    async fn open_room(
        &self,
        request: Request<pb::OpenRoomRequest>,
    ) -> Result<Response<pb::OpenRoomResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SignallingError> = async {
            let spec = convert::room_spec(request.get_ref())?;
            self.core.open_room(&caller, spec).await
        }
        .await;
        reply(result, |opened| pb::OpenRoomResponse {
            room_id: opened.room.room_id.clone(),
            admission_window: Some(pb::TimeRange {
                start_time: Some(convert::timestamp(opened.room.admission.start)),
                end_time: Some(convert::timestamp(opened.room.admission.end)),
            }),
            created: opened.created,
        })
    }

    async fn close_room(
        &self,
        request: Request<pb::CloseRoomRequest>,
    ) -> Result<Response<pb::CloseRoomResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SignallingError> = async {
            let appointment_id = domain::id("appointment_id", &r.appointment_id)?;
            let reason = convert::close_reason(r.reason)?;
            self.core.close_room(&caller, &appointment_id, reason).await
        }
        .await;
        reply(result, |closed| pb::CloseRoomResponse {
            room_id: closed.room_id,
            closed: closed.closed,
            closed_at: Some(convert::timestamp(closed.closed_at)),
        })
    }

    type SignalStream = SignalStream;

    async fn signal(
        &self,
        request: Request<Streaming<pb::SignalRequest>>,
    ) -> Result<Response<Self::SignalStream>, Status> {
        let caller = require_caller(&request)?;
        let max_sdp_bytes =
            usize::try_from(self.core.settings().max_sdp_bytes).unwrap_or(usize::MAX);
        let inbound = request.into_inner().map(move |message| {
            message
                .map(|m| convert::inbound(m, max_sdp_bytes))
                .map_err(|e| SignallingError::Unavailable(e.message().to_owned()))
        });
        let (link, receiver) = Link::new();
        let core = self.core.clone();
        let session = link.clone();
        tokio::spawn(async move { core.run_session(caller, inbound, session).await });
        Ok(Response::new(events(receiver, link)))
    }

    type OpenSignalStream = SignalStream;

    async fn open_signal(
        &self,
        request: Request<pb::SignalRequest>,
    ) -> Result<Response<Self::OpenSignalStream>, Status> {
        let caller = require_caller(&request)?;
        let join = request.into_inner();
        if !matches!(join.message, Some(pb::signal_request::Message::Join(_))) {
            return Err(Status::invalid_argument(
                "OpenSignal takes the join message; send the others with SendSignal",
            ));
        }
        let max_sdp_bytes =
            usize::try_from(self.core.settings().max_sdp_bytes).unwrap_or(usize::MAX);
        let (inbox, messages) = self.core.open_inbox(&caller);
        let later = tokio_stream::wrappers::ReceiverStream::new(messages)
            .filter_map(|bytes| async move { prost::Message::decode(bytes.as_slice()).ok() });
        let inbound = futures::stream::once(async { join })
            .chain(later)
            .map(move |message| Ok(convert::inbound(message, max_sdp_bytes)));
        let (link, receiver) = Link::new();
        let core = self.core.clone();
        let session = link.clone();
        let inbox_id = inbox.clone();
        tokio::spawn(async move {
            core.run_session(caller, Box::pin(inbound), session).await;
            core.close_inbox(&inbox_id);
        });
        let mut response = Response::new(events(receiver, link));
        let header = inbox
            .parse()
            .map_err(|_| Status::internal("the inbox id is not a header value"))?;
        response
            .metadata_mut()
            .insert("x-telehealth-signal-inbox", header);
        Ok(response)
    }

    async fn send_signal(
        &self,
        request: Request<pb::SendSignalRequest>,
    ) -> Result<Response<pb::SendSignalResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let message = r
            .message
            .ok_or_else(|| Status::invalid_argument("message is required"))?;
        match message.message {
            None => {
                return Err(Status::invalid_argument(
                    "message: exactly one message must be set",
                ));
            }
            Some(pb::signal_request::Message::Join(_)) => {
                return Err(Status::invalid_argument(
                    "message: join is sent with OpenSignal, once",
                ));
            }
            Some(_) => {}
        }
        let bytes = prost::Message::encode_to_vec(&message);
        let result = self.core.send_to_inbox(&caller, &r.inbox_id, &bytes).await;
        reply(result, |()| pb::SendSignalResponse {})
    }

    async fn get_ice_servers(
        &self,
        request: Request<pb::GetIceServersRequest>,
    ) -> Result<Response<pb::GetIceServersResponse>, Status> {
        let caller = require_caller(&request)?;
        let result: Result<_, SignallingError> = async {
            let room_id = domain::id("room_id", &request.get_ref().room_id)?;
            self.core.ice_servers_for(&caller, &room_id).await
        }
        .await;
        reply(result, |set| pb::GetIceServersResponse {
            ice_servers: Some(convert::ice_servers(&set)),
        })
    }

    async fn report_technical_incident(
        &self,
        request: Request<pb::ReportTechnicalIncidentRequest>,
    ) -> Result<Response<pb::ReportTechnicalIncidentResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SignallingError> = async {
            let appointment_id = domain::id("appointment_id", &r.appointment_id)?;
            let report = convert::incident_report(r.report.as_ref())?;
            self.core
                .report_incident(&caller, &appointment_id, report)
                .await
        }
        .await;
        reply(result, |incident| pb::ReportTechnicalIncidentResponse {
            incident: Some(convert::incident(&incident)),
        })
    }

    async fn list_technical_incidents(
        &self,
        request: Request<pb::ListTechnicalIncidentsRequest>,
    ) -> Result<Response<pb::ListTechnicalIncidentsResponse>, Status> {
        let caller = require_caller(&request)?;
        let r = request.into_inner();
        let result: Result<_, SignallingError> = async {
            let appointment_id = domain::id("appointment_id", &r.appointment_id)?;
            let size = paging::page_size(r.page_size, 100, 500)?;
            let scope = page_scope!("ListTechnicalIncidents", &caller, &r);
            let after = self
                .pages
                .position::<(i64, String)>(&scope, &r.page_token)?;
            let page = self
                .core
                .list_incidents(&caller, &appointment_id, size, after)
                .await?;
            let next = page
                .next
                .as_ref()
                .map(|position| self.pages.token(&scope, position))
                .unwrap_or_default();
            Ok((page.incidents, next))
        }
        .await;
        reply(result, |(incidents, next)| {
            pb::ListTechnicalIncidentsResponse {
                incidents: incidents.iter().map(convert::incident).collect(),
                next_page_token: next,
            }
        })
    }
}
