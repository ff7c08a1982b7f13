//! The SMTP client: one connection per message, every step bounded in time, every reply
//! bounded in size.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;

use super::config::{MailConfig, TlsMode};
use super::message::check_address;
use super::outcome::{Delivered, Refused, SendError};
use super::reply::{Line, Reply, parse_line, truncate};

/// Longest reply line accepted (RFC 5321 allows 512; some servers say more).
const MAX_LINE: usize = 4096;
/// Most lines in one reply (an EHLO reply has one per extension).
const MAX_LINES: usize = 100;
/// QUIT is a courtesy once the message is accepted; it must not hold the caller long.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Submits `message` (the bytes of [`crate::build_message`]) from `envelope_from` to
/// `recipients`. Dot-stuffing and the end-of-data mark are done here.
///
/// # Errors
/// See [`SendError`]; a recipient refused while others are accepted is not an error but is
/// listed in [`Delivered::refused`].
#[tracing::instrument(skip_all, fields(host = %config.host, port = config.port, recipients = recipients.len()))]
pub async fn send(
    config: &MailConfig,
    envelope_from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<Delivered, SendError> {
    check_address("from", envelope_from)
        .map_err(|_| SendError::InvalidAddress(truncate(envelope_from)))?;
    if recipients.is_empty() {
        return Err(SendError::NoRecipient);
    }
    for recipient in recipients {
        check_address("to", recipient)
            .map_err(|_| SendError::InvalidAddress(truncate(recipient)))?;
    }
    let (connector, server_name) = config.connector()?;

    let address = format!("{}:{}", config.host, config.port);
    let tcp = match timeout(
        config.timeout,
        TcpStream::connect((config.host.as_str(), config.port)),
    )
    .await
    {
        Err(_) => return Err(SendError::Timeout { step: "connect" }),
        Ok(Err(source)) => return Err(SendError::Connect { address, source }),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);

    match config.tls {
        TlsMode::Implicit => {
            let tls = handshake(&connector, server_name, tcp, config.timeout)
                .await
                .map_err(|e| without_certificate(config, e))?;
            let mut session = Session::new(tls, config.timeout);
            session
                .expect("greeting", 220)
                .await
                .map_err(|e| without_certificate(config, e))?;
            let ehlo = session.ehlo(&config.helo_name).await?;
            session
                .transaction(&ehlo, envelope_from, recipients, message)
                .await
        }
        TlsMode::Starttls => {
            let mut plain = Session::new(tcp, config.timeout);
            plain.expect("greeting", 220).await?;
            let ehlo = plain.ehlo(&config.helo_name).await?;
            if !ehlo.extensions().any(|e| e == "STARTTLS") {
                plain.quit().await;
                return Err(SendError::StartTlsNotOffered);
            }
            plain.command("STARTTLS", "STARTTLS", 220).await?;
            let tcp = plain.into_inner()?;
            let tls = handshake(&connector, server_name, tcp, config.timeout)
                .await
                .map_err(|e| without_certificate(config, e))?;
            let mut session = Session::new(tls, config.timeout);
            // RFC 3207: forget what was learnt in clear, ask again.
            let ehlo = session
                .ehlo(&config.helo_name)
                .await
                .map_err(|e| without_certificate(config, e))?;
            session
                .transaction(&ehlo, envelope_from, recipients, message)
                .await
        }
    }
}

async fn handshake(
    connector: &TlsConnector,
    name: rustls_pki_types::ServerName<'static>,
    tcp: TcpStream,
    limit: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SendError> {
    match timeout(limit, connector.connect(name, tcp)).await {
        Err(_) => Err(SendError::Timeout {
            step: "TLS handshake",
        }),
        Ok(Err(error)) => Err(io_error("TLS handshake", error)),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// A connection dropped by the server during the TLS handshake or its first reply after it,
/// when no client certificate was presented: the server wants one. With TLS 1.3 the server
/// checks the client's certificate after the client considers the handshake done, and many
/// servers (Python's asyncio among them) then close the connection without sending the alert,
/// so the client sees a reset, not a certificate error. Retrying would fail the same way. With
/// a certificate presented, the same drop stays a retryable connection error: a network blip
/// cannot be told from a refused certificate there, and retries are bounded by the caller.
fn without_certificate(config: &MailConfig, error: SendError) -> SendError {
    match error {
        SendError::Io { step, source }
            if config.client_identity.is_none()
                && matches!(
                    source.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionAborted
                ) =>
        {
            SendError::Certificate {
                step,
                reason: format!(
                    "the server closed the connection ({source}) and no client certificate is \
                     configured; the server most likely requires one"
                ),
            }
        }
        other => other,
    }
}

/// An I/O error, told apart: a TLS alert or certificate check inside it is not a network
/// problem and will not go away by retrying.
fn io_error(step: &'static str, error: io::Error) -> SendError {
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return tls_error(step, tls);
    }
    if error.kind() == io::ErrorKind::TimedOut {
        return SendError::Timeout { step };
    }
    SendError::Io {
        step,
        source: error,
    }
}

fn tls_error(step: &'static str, error: &rustls::Error) -> SendError {
    use rustls::AlertDescription as Alert;
    let reason = error.to_string();
    match error {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::AccessDenied
            | Alert::HandshakeFailure,
        ) => SendError::Certificate { step, reason },
        _ => SendError::Tls { step, reason },
    }
}

/// One SMTP conversation over a stream (plain or TLS).
struct Session<S> {
    stream: S,
    /// Bytes read past the last reply.
    buffer: Vec<u8>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn new(stream: S, timeout: Duration) -> Session<S> {
        Session {
            stream,
            buffer: Vec::new(),
            timeout,
        }
    }

    /// The plain stream, to start TLS on. Anything the server sent after its `220` to STARTTLS
    /// would be read as if it came through TLS (a known injection): refused.
    fn into_inner(self) -> Result<S, SendError> {
        if !self.buffer.is_empty() {
            return Err(SendError::Protocol {
                step: "STARTTLS",
                reason: "the server sent data before the TLS handshake".into(),
            });
        }
        Ok(self.stream)
    }

    async fn write(&mut self, step: &'static str, bytes: &[u8]) -> Result<(), SendError> {
        // Large messages are written in pieces, each with the step's time bound, so that a
        // slow but moving link is not cut while a stalled one is.
        for chunk in bytes.chunks(64 * 1024) {
            match timeout(self.timeout, self.stream.write_all(chunk)).await {
                Err(_) => return Err(SendError::Timeout { step }),
                Ok(Err(error)) => return Err(io_error(step, error)),
                Ok(Ok(())) => {}
            }
        }
        match timeout(self.timeout, self.stream.flush()).await {
            Err(_) => Err(SendError::Timeout { step }),
            Ok(Err(error)) => Err(io_error(step, error)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads one complete reply, within the time bound.
    async fn reply(&mut self, step: &'static str) -> Result<Reply, SendError> {
        let deadline = Instant::now() + self.timeout;
        let mut lines: Vec<String> = Vec::new();
        let mut code = None;
        loop {
            let line = self.line(step, deadline).await?;
            let parsed =
                parse_line(&line).map_err(|reason| SendError::Protocol { step, reason })?;
            let (line_code, text, last) = match parsed {
                Line::More(c, t) => (c, t, false),
                Line::Last(c, t) => (c, t, true),
            };
            if *code.get_or_insert(line_code) != line_code {
                return Err(SendError::Protocol {
                    step,
                    reason: "reply lines with different codes".into(),
                });
            }
            lines.push(text.to_owned());
            if last {
                return Ok(Reply {
                    code: line_code,
                    text: lines.join("\n"),
                });
            }
            if lines.len() >= MAX_LINES {
                return Err(SendError::Protocol {
                    step,
                    reason: format!("a reply of more than {MAX_LINES} lines"),
                });
            }
        }
    }

    /// One line without its CRLF (a bare LF is tolerated).
    async fn line(&mut self, step: &'static str, deadline: Instant) -> Result<Vec<u8>, SendError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buffer.len() > MAX_LINE {
                return Err(SendError::Protocol {
                    step,
                    reason: format!("a reply line longer than {MAX_LINE} bytes"),
                });
            }
            let mut chunk = [0u8; 1024];
            let read = match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(SendError::Timeout { step }),
                Ok(Err(error)) => return Err(io_error(step, error)),
                Ok(Ok(read)) => read,
            };
            if read == 0 {
                return Err(SendError::Io {
                    step,
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Reads a reply and checks its code.
    async fn expect(&mut self, step: &'static str, code: u16) -> Result<Reply, SendError> {
        let reply = self.reply(step).await?;
        if reply.code != code {
            return Err(rejected(step, reply));
        }
        Ok(reply)
    }

    async fn command(
        &mut self,
        step: &'static str,
        line: &str,
        code: u16,
    ) -> Result<Reply, SendError> {
        self.write(step, format!("{line}\r\n").as_bytes()).await?;
        self.expect(step, code).await
    }

    async fn ehlo(&mut self, helo_name: &str) -> Result<Reply, SendError> {
        self.command("EHLO", &format!("EHLO {helo_name}"), 250)
            .await
    }

    async fn transaction(
        &mut self,
        ehlo: &Reply,
        from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Delivered, SendError> {
        let eight_bit = !message.is_ascii() && ehlo.extensions().any(|e| e == "8BITMIME");
        let body = if eight_bit { " BODY=8BITMIME" } else { "" };
        self.command("MAIL FROM", &format!("MAIL FROM:<{from}>{body}"), 250)
            .await?;

        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        for recipient in recipients {
            self.write("RCPT TO", format!("RCPT TO:<{recipient}>\r\n").as_bytes())
                .await?;
            let reply = self.reply("RCPT TO").await?;
            match reply.code {
                250 | 251 => accepted.push(recipient.clone()),
                // The server is closing the connection: nothing more will be accepted.
                421 => return Err(rejected("RCPT TO", reply)),
                code => {
                    tracing::warn!(code, recipient = %recipient, "recipient refused");
                    refused.push(Refused {
                        recipient: recipient.clone(),
                        code,
                        text: reply.text,
                    });
                }
            }
        }
        if accepted.is_empty() {
            self.quit().await;
            return Err(SendError::AllRecipientsRefused(refused));
        }

        self.command("DATA", "DATA", 354).await?;
        self.write("message data", &dot_stuffed(message)).await?;
        let reply = self.expect("end of data", 250).await?;
        self.quit().await;
        tracing::info!(
            accepted = accepted.len(),
            refused = refused.len(),
            "message submitted"
        );
        Ok(Delivered {
            accepted,
            refused,
            reply: reply.text,
        })
    }

    /// Says goodbye and closes TLS properly; failures here change nothing for the message.
    async fn quit(&mut self) {
        let _ = timeout(QUIT_TIMEOUT, async {
            if self.stream.write_all(b"QUIT\r\n").await.is_ok() && self.stream.flush().await.is_ok()
            {
                let mut chunk = [0u8; 512];
                let _ = self.stream.read(&mut chunk).await;
            }
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

fn rejected(step: &'static str, reply: Reply) -> SendError {
    SendError::Rejected {
        step,
        code: reply.code,
        text: truncate(&reply.text),
    }
}

/// The DATA payload: CRLF line endings (a bare LF or CR becomes CRLF), a `.` doubled at the
/// start of each line (RFC 5321 §4.5.2), a final CRLF, and the `.` line that ends the data.
fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 5);
    let mut line_start = true;
    let mut bytes = message.iter().peekable();
    while let Some(&byte) = bytes.next() {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        match byte {
            b'\r' => {
                if bytes.peek() == Some(&&b'\n') {
                    bytes.next();
                }
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            _ => {
                out.push(byte);
                line_start = false;
            }
        }
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"no final newline", b"no final newline\r\n.\r\n"),
            (b"bare\nlf\n.x", b"bare\r\nlf\r\n..x\r\n.\r\n"),
            (b"", b".\r\n"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                dot_stuffed(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn retryability_follows_the_reply_class() {
        let rejected = |code| SendError::Rejected {
            step: "MAIL FROM",
            code,
            text: String::new(),
        };
        assert!(rejected(451).is_retryable());
        assert!(!rejected(550).is_retryable());
        assert!(SendError::Timeout { step: "EHLO" }.is_retryable());
        assert!(!SendError::StartTlsNotOffered.is_retryable());
        let refused = |code| Refused {
            recipient: "a@b.fr".into(),
            code,
            text: String::new(),
        };
        assert!(SendError::AllRecipientsRefused(vec![refused(450)]).is_retryable());
        assert!(!SendError::AllRecipientsRefused(vec![refused(450), refused(550)]).is_retryable());
    }

    #[tokio::test]
    async fn replies_are_read_whole_and_bounded() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let mut session = Session::new(client, Duration::from_secs(2));
        server
            .write_all(b"250-mail.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            .await
            .expect("write");
        let reply = session.reply("EHLO").await.expect("a reply");
        assert_eq!(reply.code, 250);
        assert_eq!(reply.text, "mail.test\nSTARTTLS\n8BITMIME");

        server
            .write_all(&vec![b'2'; MAX_LINE + 10])
            .await
            .expect("write");
        assert!(matches!(
            session.reply("EHLO").await,
            Err(SendError::Protocol { .. })
        ));

        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let mut session = Session::new(client, Duration::from_secs(2));
        server
            .write_all(&b"250-x\r\n".repeat(MAX_LINES + 1))
            .await
            .expect("write");
        assert!(matches!(
            session.reply("EHLO").await,
            Err(SendError::Protocol { .. })
        ));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (client, _server) = tokio::io::duplex(1024);
        let mut session = Session::new(client, Duration::from_millis(50));
        let error = session.reply("greeting").await.expect_err("no reply");
        assert!(matches!(error, SendError::Timeout { step: "greeting" }));
        assert!(error.is_retryable());
    }
}
