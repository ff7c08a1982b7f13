//! One shape for every watch RPC (`WatchAppointments`, `WatchRequests`, `WatchAlerts`): a first
//! message saying the subscription is active, then the events of a change feed interleaved
//! with heartbeats while idle, until the client leaves or the service shuts down.
//!
//! The service turns its change feed into events (skipping those the caller may no longer see)
//! and says how each [`Frame`] looks on the wire; the timing lives here.

use std::{pin::Pin, time::Duration};

use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// A server stream as tonic's generated traits take it.
pub type ServerStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// One message of a watch stream, before it is put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<E> {
    /// The first message: the subscription is active (events from now on are delivered).
    Ready(prost_types::Timestamp),
    /// A change the caller may see.
    Event(E),
    /// Sent after each `heartbeat` interval so that idle streams stay open through proxies.
    Heartbeat(prost_types::Timestamp),
}

/// The watch stream of `events`: [`Frame::Ready`] first, then events and heartbeats every
/// `heartbeat`, ended cleanly when `shutdown` is cancelled (the client reconnects elsewhere).
/// An `Err` from `events` is sent to the client, which ends the call.
pub fn server_stream<E, T, S, W>(
    events: S,
    heartbeat: Duration,
    shutdown: CancellationToken,
    wire: W,
) -> ServerStream<T>
where
    E: Send + 'static,
    T: Send + 'static,
    S: Stream<Item = Result<E, Status>> + Send + 'static,
    W: Fn(Frame<E>) -> T + Send + Sync + Clone + 'static,
{
    let ready = wire(Frame::Ready(now()));
    let on_event = wire.clone();
    let events = events.map(move |event| event.map(|event| on_event(Frame::Event(event))));
    let heartbeats = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat,
        heartbeat,
    ))
    .map(move |_| Ok(wire(Frame::Heartbeat(now()))));
    let stream = futures::stream::once(async move { Ok(ready) })
        .chain(futures::stream::select(events, heartbeats))
        .take_until(async move { shutdown.cancelled().await });
    Box::pin(stream)
}

fn now() -> prost_types::Timestamp {
    crate::record::timestamp(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(frame: Frame<u32>) -> String {
        match frame {
            Frame::Ready(_) => "ready".into(),
            Frame::Event(n) => format!("event {n}"),
            Frame::Heartbeat(_) => "heartbeat".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ready_comes_first_then_events_and_heartbeats_until_shutdown() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Result<u32, Status>>();
        let shutdown = CancellationToken::new();
        let mut stream = server_stream(
            tokio_stream::wrappers::UnboundedReceiverStream::new(receiver),
            Duration::from_secs(15),
            shutdown.clone(),
            label,
        );
        let next = |item: Option<Result<String, Status>>| item.expect("open").expect("ok");
        assert_eq!(next(stream.next().await), "ready");
        sender.send(Ok(1)).expect("open");
        assert_eq!(next(stream.next().await), "event 1");
        // Idle: the paused clock jumps to the next heartbeat.
        assert_eq!(next(stream.next().await), "heartbeat");
        sender.send(Ok(2)).expect("open");
        assert_eq!(next(stream.next().await), "event 2");
        sender
            .send(Err(Status::internal("feed lost")))
            .expect("open");
        let error = stream
            .next()
            .await
            .expect("open")
            .expect_err("the feed's error");
        assert_eq!(error.message(), "feed lost");
        shutdown.cancel();
        assert!(stream.next().await.is_none(), "ends on shutdown");
    }
}
