//! A TCP link that misbehaves on demand, between a gateway and a service: added latency, bytes
//! held back (in one direction or both), every connection cut. A userspace stand-in for
//! `tc netem`, which needs a kernel queueing discipline some machines (this CI's) do not have.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

/// What the link does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Passes them on at once.
    None,
    /// Passes each read on after this long (both directions).
    Delay(Duration),
    /// Holds the service's bytes back (its answers), passes the requests on.
    HoldAnswers,
    /// Holds everything back, both ways.
    Hold,
}

/// A link listening on loopback, relaying to one target.
pub struct FaultyLink {
    /// Where to connect instead of the target.
    pub address: SocketAddr,
    fault: watch::Sender<Fault>,
    cut: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl FaultyLink {
    /// A link to `target`, passing everything on until told otherwise.
    pub async fn to(target: SocketAddr) -> FaultyLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (fault, faults) = watch::channel(Fault::None);
        let cut = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (cuts, stopped) = (cut.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let cut = cuts.lock().expect("lock").clone();
                tokio::spawn(relay(client, server, faults.clone(), cut));
            }
        });
        FaultyLink {
            address,
            fault,
            cut,
            stop,
        }
    }

    /// From now on, `fault`.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Cuts every open connection now, as a broken network does (no goodbye either way); new
    /// connections go through.
    pub fn cut_all(&self) {
        let mut current = self.cut.lock().expect("lock");
        current.cancel();
        *current = CancellationToken::new();
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut.lock().expect("lock").cancel();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    faults: watch::Receiver<Fault>,
    cut: CancellationToken,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let requests = pass(client_read, server_write, faults.clone(), false);
    let answers = pass(server_read, client_write, faults, true);
    tokio::select! {
        () = cut.cancelled() => {}
        _ = async { tokio::join!(requests, answers) } => {}
    }
}

/// Copies `from` to `to`, applying the fault; `answers` is the service-to-gateway direction.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Fault>,
    answers: bool,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(read) = from.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            let _ = to.shutdown().await;
            return;
        }
        loop {
            let fault = *faults.borrow_and_update();
            match fault {
                Fault::None => break,
                Fault::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Fault::HoldAnswers if !answers => break,
                Fault::HoldAnswers | Fault::Hold => {
                    if faults.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
