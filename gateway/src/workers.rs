//! The threads that serve client connections.
//!
//! Each worker is a thread with its own single-threaded event loop. A client connection is
//! handed to the worker serving the fewest, and from then on the connection, every call on it,
//! and the connections to the services those calls go through (see
//! [`crate::upstream`]) stay on that thread: a call never wakes another thread between its
//! client and its service. On tokio's work-stealing runtime each call crossed threads several
//! times; keeping it on one saved 7–15 % of the gateway's CPU per call at 16 in flight
//! (`benches/README.md`, "Worker threads").

use std::{
    cell::Cell,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::net::TcpStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

thread_local! {
    /// The worker this thread is (1-based), 0 on any other thread.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The worker running the calling code: 1 to the number of workers, 0 outside them (the
/// process's own runtime: health checks, reloads, tests).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// The worker threads; they stop when this is dropped (their open connections with them).
pub struct Workers {
    workers: Vec<Worker>,
    stop: CancellationToken,
}

struct Worker {
    runtime: tokio::runtime::Handle,
    /// Client connections it serves now.
    open: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts `count` workers (0: one per core).
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Built up in place: on an error, dropping it stops the workers already started.
        let mut workers = Workers {
            workers: Vec::with_capacity(count),
            stop: CancellationToken::new(),
        };
        for index in 1..=count {
            // The runtime is made, run and dropped on its own thread (a runtime may not be
            // dropped where blocking is not allowed, as in the async code that starts this).
            let (started, handle) = std::sync::mpsc::sync_channel(1);
            let stop = workers.stop.clone();
            std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(error) => {
                            let _ = started.send(Err(error));
                            return;
                        }
                    };
                    if started.send(Ok(runtime.handle().clone())).is_err() {
                        return;
                    }
                    CURRENT.with(|current| current.set(index));
                    runtime.block_on(stop.cancelled());
                    // Dropping the runtime drops what it still runs: the drain is over.
                })?;
            let runtime = handle
                .recv()
                .map_err(|_| std::io::Error::other("a gateway worker did not start"))??;
            workers.workers.push(Worker {
                runtime,
                open: Arc::default(),
            });
        }
        Ok(workers)
    }

    /// Serves `tcp` with `serve` on the worker with the fewest connections, tracked by `tracker`.
    pub fn serve<F, Fut>(&self, tcp: TcpStream, tracker: &TaskTracker, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // The socket leaves the accepting runtime's event loop for the worker's.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(error) => {
                tracing::warn!(%error, "accepted connection lost before serving it");
                return;
            }
        };
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            return;
        };
        let open = OpenConnection::new(worker.open.clone());
        worker.runtime.spawn(tracker.track_future(async move {
            let _open = open;
            match TcpStream::from_std(tcp) {
                Ok(tcp) => serve(tcp).await,
                Err(error) => tracing::warn!(%error, "accepted connection lost before serving it"),
            }
        }));
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Counts a connection against its worker while it is open.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(open)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_spread_over_the_workers_and_served_on_them() {
        let workers = Workers::start(2).expect("workers");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let tracker = TaskTracker::new();
        let (seen, mut served_on) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::new();
        let mut on = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(address).await.expect("connect"));
            let (tcp, _) = listener.accept().await.expect("accept");
            let seen = seen.clone();
            workers.serve(tcp, &tracker, move |mut tcp| async move {
                let _ = seen.send(current());
                // Open until the client closes, so that the next connection goes elsewhere.
                let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut [0u8; 1]).await;
            });
            on.push(served_on.recv().await.expect("served"));
        }
        on.sort_unstable();
        assert_eq!(on, vec![1, 1, 2, 2], "each worker serves two of the four");
        assert_eq!(current(), 0, "the test's own thread is no worker");
        drop(clients);
        tracker.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait())
            .await
            .expect("each connection's task ends when its client closes");
        let open: usize = workers
            .workers
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .sum();
        assert_eq!(open, 0, "closed connections are no longer counted");
    }
}
