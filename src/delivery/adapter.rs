//! The channel adapter interface. Adapters return a typed outcome and the ledger records it;
//! they never change a communication's status. (The inbox is the in-app channel's provider,
//! and the webhook adapter keeps its endpoints' circuit breakers in the subscription table.)

use std::time::Duration;

use crate::camunda::worker::BoxFuture;
use crate::ledger::{Channel, CommunicationId};

use super::failure::FailureClass;

/// A rendered message ready for one recipient.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    pub communication_id: CommunicationId,
    pub tenant_id: String,
    pub communication_type: crate::ledger::CommunicationType,
    /// The id receivers de-duplicate on: the communication's, or the original's for a replay.
    pub origin_id: CommunicationId,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub correlation_id: String,
    pub attempt_no: i32,
    pub address: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub attachments: Vec<OutboundAttachment>,
    /// The body sealed, when the template keeps bodies encrypted: what a provider that
    /// stores the message (the inbox) keeps instead of the plaintext.
    pub retained: Option<crate::keyring::Sealed>,
}

/// A file sent with the message.
#[derive(Debug, Clone)]
pub struct OutboundAttachment {
    pub file_name: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// How the provider answered.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// Accepted by the provider (which is not "delivered").
    Accepted {
        provider_message_id: Option<String>,
        response_code: Option<i32>,
        summary: String,
    },
    Failed {
        class: FailureClass,
        response_code: Option<i32>,
        summary: String,
        retry_after: Option<Duration>,
    },
}

pub trait ChannelAdapter: Send + Sync + 'static {
    fn channel(&self) -> Channel;
    fn send<'a>(&'a self, message: &'a OutboundMessage) -> BoxFuture<'a, DeliveryOutcome>;
}
