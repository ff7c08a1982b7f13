//! The HTTP/2 connection preface, read by the gateway before HTTP/2 starts.
//!
//! hyper waits for the client's preface without a deadline (and its idle timers only start
//! once HTTP/2 runs), so a client that completes TLS and then says nothing would hold its
//! connection for ever. The server reads the 24 preface bytes itself under
//! `preface_timeout_seconds`, checks them, and hands hyper a stream that replays them.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What every HTTP/2 client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the preface from `stream`; fails if the client sends anything else or closes.
pub async fn read<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<Replayed<S>> {
    let mut preface = [0_u8; 24];
    stream.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 connection preface",
        ));
    }
    Ok(Replayed {
        inner: stream,
        replay: PREFACE,
    })
}

pin_project! {
    /// A stream whose first bytes read are the preface already taken from it.
    pub struct Replayed<S> {
        #[pin]
        inner: S,
        replay: &'static [u8],
    }
}

impl<S: AsyncRead> AsyncRead for Replayed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            *this.replay = &this.replay[n..];
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Replayed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_preface_is_checked_then_replayed_before_the_rest() {
        let mut sent = PREFACE.to_vec();
        sent.extend_from_slice(b"SETTINGS");
        let mut replayed = read(&sent[..]).await.expect("a preface");
        let mut everything = Vec::new();
        replayed.read_to_end(&mut everything).await.expect("read");
        assert_eq!(everything, sent);

        let error = read(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..])
            .await
            .err()
            .expect("HTTP/1.1 is refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            read(&b"PRI"[..]).await.is_err(),
            "a closed stream is refused"
        );
    }
}
