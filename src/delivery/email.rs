//! The email channel: SMTP through lettre's pooled async transport.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

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
    pub password: Option<String>,
    pub timeout: Duration,
    pub pool_max: u32,
}

pub struct EmailAdapter {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    message_id_domain: String,
}

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
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(url.port().unwrap_or(default_port))
            .timeout(Some(settings.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(settings.pool_max.max(1))
                    .idle_timeout(Duration::from_secs(30)),
            );
        if let Some(implicit) = tls {
            let params =
                TlsParameters::new(host).map_err(|e| EmailConfigError::Tls(e.to_string()))?;
            builder = builder.tls(if implicit {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            });
        }
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| {
                EmailConfigError::From(settings.from.clone(), e.to_string())
            })?;
        let message_id_domain = from.email.domain().to_string();
        Ok(EmailAdapter {
            transport: builder.build(),
            from,
            message_id_domain,
        })
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
            .header(CommunicationTypeHeader(message.communication_type.clone()))
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
            match self.transport.send(email).await {
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
                    let failure = smtp_failure(&err);
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
