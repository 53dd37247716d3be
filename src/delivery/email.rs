//! The email channel: SMTP over lettre's async connections, in a pool of herald's own: at most
//! `pool_max` connections, each reused from message to message (a send waits, within
//! `pool_get_timeout`, for one to come free), dropped when broken or idle too long.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use secrecy::{ExposeSecret, SecretString};

use crate::camunda::worker::BoxFuture;
use crate::ledger::Channel;
use crate::policy::redact_addresses;

use super::adapter::{ChannelAdapter, DeliveryOutcome, OutboundMessage};
use super::failure::{classify_smtp, FailureClass, SmtpFailure};

#[derive(Debug, thiserror::Error)]
pub enum EmailConfigError {
    #[error("smtp url '{0}': {1}")]
    Url(String, String),
    #[error("sender address '{0}': {1}")]
    From(String, String),
    #[error("smtp tls: {0}")]
    Tls(String),
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `smtp://host:port` (plain, for loopback), `smtp+starttls://host:port`, `smtps://host:port`.
    pub url: String,
    pub from: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub timeout: Duration,
    /// SMTP connections at most: sends beyond this wait for a connection to come free.
    pub pool_max: u32,
    /// How long a send waits for a free connection before the attempt fails (retryable).
    pub pool_get_timeout: Duration,
}

/// How a connection is secured.
#[derive(Clone)]
enum Security {
    Plain,
    StartTls(TlsParameters),
    Wrapper(TlsParameters),
}

pub struct EmailAdapter {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    from: Mailbox,
    message_id_domain: String,
    /// Connections in use at most (one permit each).
    permits: tokio::sync::Semaphore,
    /// Idle connections, with when they were last used.
    idle: std::sync::Mutex<Vec<(AsyncSmtpConnection, std::time::Instant)>>,
    pool_get_timeout: Duration,
    /// Opened so far (connections are reused: this grows only with the pool).
    opened: std::sync::atomic::AtomicU64,
}

/// Why a message did not reach the SMTP server's answer.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Smtp(lettre::transport::smtp::Error),
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    #[error("no connection within the timeout")]
    ConnectTimeout,
}

/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Declares a header that carries a text value.
macro_rules! text_header {
    ($(#[$meta:meta])* $name:ident, $header:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        struct $name(String);

        impl Header for $name {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($header)
            }

            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok($name(s.to_string()))
            }

            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(
    /// `X-Correlation-Id`, so that a message can be traced back to its communication.
    CorrelationIdHeader,
    "X-Correlation-Id"
);
text_header!(
    /// `X-Herald-Communication-Type`: mailbox rules can sort alerts from customer mail.
    CommunicationTypeHeader,
    "X-Herald-Communication-Type"
);
text_header!(
    /// Postmark returns it as `Metadata.communicationId` in its bounce and delivery webhooks.
    PostmarkMetadataHeader,
    "X-PM-Metadata-communicationId"
);

impl EmailAdapter {
    pub fn new(settings: &EmailSettings) -> Result<EmailAdapter, EmailConfigError> {
        let url = url::Url::parse(&settings.url)
            .map_err(|e| EmailConfigError::Url(settings.url.clone(), e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| EmailConfigError::Url(settings.url.clone(), "no host".into()))?
            .to_string();
        let (tls, default_port) = match url.scheme() {
            "smtp" => (None, 25),
            "smtp+starttls" => (Some(false), 587),
            "smtps" => (Some(true), 465),
            other => {
                return Err(EmailConfigError::Url(
                    settings.url.clone(),
                    format!("scheme '{other}' (use smtp, smtp+starttls or smtps)"),
                ))
            }
        };
        let port = url.port().unwrap_or(default_port);
        let security = match tls {
            None => Security::Plain,
            Some(implicit) => {
                let params = TlsParameters::new(host.clone())
                    .map_err(|e| EmailConfigError::Tls(e.to_string()))?;
                if implicit {
                    Security::Wrapper(params)
                } else {
                    Security::StartTls(params)
                }
            }
        };
        let credentials = match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            )),
            _ => None,
        };
        // Credentials never cross the network in clear: plain smtp:// with a password only to
        // this machine.
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if credentials.is_some() && matches!(security, Security::Plain) && !loopback {
            return Err(EmailConfigError::Url(
                settings.url.clone(),
                "credentials over plain smtp:// are refused: use smtp+starttls:// or smtps://"
                    .into(),
            ));
        }
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                EmailConfigError::From(settings.from.clone(), e.to_string())
            })?;
        let message_id_domain = from.email.domain().to_string();
        let hello = ClientId::Domain(
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into()),
        );
        Ok(EmailAdapter {
            host,
            port,
            security,
            credentials,
            timeout: settings.timeout,
            hello,
            from,
            message_id_domain,
            permits: tokio::sync::Semaphore::new(settings.pool_max.max(1) as usize),
            idle: std::sync::Mutex::new(Vec::new()),
            pool_get_timeout: settings.pool_get_timeout,
            opened: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Connections opened since start.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A fresh connection: TCP (or TLS), EHLO, STARTTLS when asked, AUTH when configured.
    /// Plain and STARTTLS connections are opened by herald with TCP_NODELAY: SMTP is a
    /// conversation of small writes, and Nagle's algorithm with delayed ACKs would stall each
    /// message by tens of milliseconds.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let mut conn = match &self.security {
            Security::Wrapper(params) => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                Some(params.clone()),
                None,
            )
            .await
            .map_err(SendError::Smtp)?,
            Security::Plain | Security::StartTls(_) => {
                let tcp = tokio::time::timeout(
                    self.timeout,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| SendError::ConnectTimeout)?
                .map_err(SendError::Connect)?;
                tcp.set_nodelay(true).map_err(SendError::Connect)?;
                tokio::time::timeout(
                    self.timeout,
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
                )
                .await
                .map_err(|_| SendError::ConnectTimeout)?
                .map_err(SendError::Smtp)?
            }
        };
        if let Security::StartTls(params) = &self.security {
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(SendError::Smtp)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(SendError::Smtp)?;
        }
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(conn)
    }

    /// An idle connection that still answers, else a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let parked = self.idle.lock().expect("pool lock").pop();
            match parked {
                Some((mut conn, since)) => {
                    // A connection used within the last second is taken as it is; an older one
                    // must still answer a NOOP (servers close idle sessions).
                    let idle_for = since.elapsed();
                    if idle_for < Duration::from_secs(1)
                        || (idle_for < IDLE_TIMEOUT && conn.test_connected().await)
                    {
                        return Ok(conn);
                    }
                    conn.abort().await;
                }
                None => return self.connect().await,
            }
        }
    }

    /// Sends one message on a pooled connection; the connection goes back unless it broke.
    async fn transmit(
        &self,
        email: &Message,
    ) -> Result<lettre::transport::smtp::response::Response, SendError> {
        let mut conn = self.checkout().await?;
        let result = conn
            .send(email.envelope(), &email.formatted())
            .await
            .map_err(SendError::Smtp);
        if conn.has_broken() {
            conn.abort().await;
        } else {
            self.idle
                .lock()
                .expect("pool lock")
                .push((conn, std::time::Instant::now()));
        }
        result
    }

    fn build(&self, message: &OutboundMessage) -> Result<Message, DeliveryOutcome> {
        let to: Mailbox = message
            .address
            .parse()
            .map_err(|e: lettre::address::AddressError| DeliveryOutcome::Failed {
                class: FailureClass::InvalidRecipient,
                response_code: None,
                summary: format!("invalid address: {e}"),
                retry_after: None,
            })?;
        // One subject line, whatever the template produced: no header injection.
        let subject: String = message.subject.replace(['\r', '\n'], " ");
        let alternative =
            MultiPart::alternative_plain_html(message.text.clone(), message.html.clone());
        let body = if message.attachments.is_empty() {
            alternative
        } else {
            let mut mixed = MultiPart::mixed().multipart(alternative);
            for file in &message.attachments {
                let content_type = ContentType::parse(&file.media_type).unwrap_or_else(|_| {
                    ContentType::parse("application/octet-stream").expect("a valid media type")
                });
                mixed = mixed.singlepart(
                    Attachment::new(file.file_name.clone()).body(file.bytes.clone(), content_type),
                );
            }
            mixed
        };
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            // One Message-ID per communication, the same on every attempt: a receiver that
            // got a message whose acceptance we never heard of can drop the second copy.
            .message_id(Some(format!(
                "<{}@{}>",
                message.communication_id, self.message_id_domain
            )))
            .header(CorrelationIdHeader(message.correlation_id.clone()))
            .header(CommunicationTypeHeader(
                message.communication_type.to_string(),
            ))
            .header(PostmarkMetadataHeader(message.communication_id.to_string()))
            .multipart(body)
            .map_err(|e| DeliveryOutcome::Failed {
                class: FailureClass::Configuration,
                response_code: None,
                summary: format!("message could not be built: {e}"),
                retry_after: None,
            })
    }
}

impl ChannelAdapter for EmailAdapter {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn send<'a>(&'a self, message: &'a OutboundMessage) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(async move {
            let email = match self.build(message) {
                Ok(email) => email,
                Err(outcome) => return outcome,
            };
            let Ok(Ok(_permit)) =
                tokio::time::timeout(self.pool_get_timeout, self.permits.acquire()).await
            else {
                return DeliveryOutcome::Failed {
                    class: FailureClass::ProviderUnavailable,
                    response_code: None,
                    summary: format!(
                        "no SMTP connection came free within {} ms",
                        self.pool_get_timeout.as_millis()
                    ),
                    retry_after: None,
                };
            };
            match self.transmit(&email).await {
                Ok(response) => {
                    let text: Vec<&str> = response.message().collect();
                    let text = text.join(" ");
                    let provider_message_id = text
                        .split("queued as ")
                        .nth(1)
                        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
                        .filter(|s| !s.is_empty());
                    DeliveryOutcome::Accepted {
                        provider_message_id,
                        response_code: Some(u16::from(response.code()) as i32),
                        summary: truncate(&redact_addresses(&text), 300),
                    }
                }
                Err(err) => {
                    let failure = match &err {
                        SendError::Smtp(err) => smtp_failure(err),
                        SendError::Connect(_) => SmtpFailure::Connection,
                        SendError::ConnectTimeout => SmtpFailure::Timeout,
                    };
                    DeliveryOutcome::Failed {
                        class: classify_smtp(failure),
                        response_code: match failure {
                            SmtpFailure::Reply(code) => Some(code as i32),
                            _ => None,
                        },
                        summary: truncate(&redact_addresses(&err.to_string()), 300),
                        retry_after: None,
                    }
                }
            }
        })
    }
}

fn smtp_failure(err: &lettre::transport::smtp::Error) -> SmtpFailure {
    if let Some(code) = err.status() {
        SmtpFailure::Reply(u16::from(code))
    } else if err.is_timeout() {
        SmtpFailure::Timeout
    } else if err.is_tls() {
        SmtpFailure::Tls
    } else if err.is_response() || err.is_client() {
        SmtpFailure::Protocol
    } else {
        SmtpFailure::Connection
    }
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, password: Option<&str>) -> EmailSettings {
        EmailSettings {
            url: url.into(),
            from: "herald <noreply@herald.local>".into(),
            username: password.map(|_| "herald".to_string()),
            password: password.map(SecretString::from),
            timeout: Duration::from_secs(5),
            pool_max: 2,
            pool_get_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn credentials_never_go_over_plain_smtp_to_another_machine() {
        assert!(EmailAdapter::new(&settings("smtp://mail.example.com:25", Some("pw"))).is_err());
        assert!(EmailAdapter::new(&settings("smtp://127.0.0.1:2525", Some("pw"))).is_ok());
        assert!(EmailAdapter::new(&settings("smtp://mail.example.com:25", None)).is_ok());
        assert!(EmailAdapter::new(&settings(
            "smtp+starttls://mail.example.com:587",
            Some("pw")
        ))
        .is_ok());
        assert!(EmailAdapter::new(&settings("ftp://mail.example.com", None)).is_err());
    }
}
