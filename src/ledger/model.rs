//! The ledger's vocabulary: ids, statuses, channels, categories.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Declares a closed set of values stored as SCREAMING_SNAKE_CASE text.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownValue { kind: stringify!($name), value: other.to_string() }),
                }
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown {kind} '{value}'")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

text_enum!(
    /// The lifecycle of a communication (design notes, section 4).
    CommunicationStatus {
        Requested = "REQUESTED",
        Suppressed = "SUPPRESSED",
        Queued = "QUEUED",
        Sending = "SENDING",
        Sent = "SENT",
        Delivered = "DELIVERED",
        Bounced = "BOUNCED",
        Opened = "OPENED",
        Clicked = "CLICKED",
        FailedRetryable = "FAILED_RETRYABLE",
        FailedFinal = "FAILED_FINAL",
    }
);

impl CommunicationStatus {
    /// Whether the lifecycle may move from `self` to `to`.
    pub fn can_become(self, to: CommunicationStatus) -> bool {
        use CommunicationStatus::*;
        match self {
            Requested => matches!(to, Queued | Suppressed | FailedFinal),
            Queued => matches!(to, Sending | Suppressed | FailedFinal),
            // Sending → Sending: a sender's lease expired and another one took the job.
            Sending => matches!(to, Sending | Sent | FailedRetryable | FailedFinal),
            FailedRetryable => matches!(to, Sending | FailedFinal),
            Sent => matches!(to, Delivered | Bounced | Opened | Clicked),
            Delivered => matches!(to, Opened | Clicked | Bounced),
            Opened => matches!(to, Clicked),
            Clicked | Bounced | Suppressed | FailedFinal => false,
        }
    }

    /// The lifecycle of a parent communication, which has no attempts of its own: its
    /// outcome follows its children's.
    pub fn can_become_as_parent(self, to: CommunicationStatus) -> bool {
        use CommunicationStatus::*;
        match self {
            Requested => matches!(to, Queued | Sent | Suppressed | FailedFinal),
            Queued => matches!(to, Sent | Suppressed | FailedFinal),
            _ => false,
        }
    }

    /// The outcome a waiting process learns of, once there is one.
    pub fn outcome(self) -> Option<Outcome> {
        use CommunicationStatus::*;
        match self {
            Sent | Delivered | Opened | Clicked => Some(Outcome::Sent),
            FailedFinal | Suppressed | Bounced => Some(Outcome::Failed),
            Requested | Queued | Sending | FailedRetryable => None,
        }
    }

    /// The event published to the outbox when a communication enters this status.
    pub fn event_type(self) -> Option<&'static str> {
        use CommunicationStatus::*;
        match self {
            Requested => Some("CommunicationRequested"),
            Suppressed => Some("CommunicationSuppressed"),
            Queued => Some("CommunicationQueued"),
            Sent => Some("CommunicationSent"),
            FailedFinal => Some("CommunicationFailed"),
            Bounced => Some("CommunicationBounced"),
            Delivered => Some("CommunicationDelivered"),
            Opened => Some("CommunicationOpened"),
            Clicked => Some("CommunicationClicked"),
            Sending | FailedRetryable => None,
        }
    }
}

/// What a waiting process is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Failed,
}

impl Outcome {
    /// The Camunda message name (an interface: BPMN models catch these names).
    pub fn message_name(self) -> &'static str {
        match self {
            Outcome::Sent => "CommunicationSent",
            Outcome::Failed => "CommunicationFailed",
        }
    }
}

text_enum!(
    Channel {
        Email = "EMAIL",
        Webhook = "WEBHOOK",
        InApp = "IN_APP",
    }
);

text_enum!(
    /// Communication types of the design notes, section 3.
    CommunicationType {
        ApprovalTaskAssigned = "APPROVAL_TASK_ASSIGNED",
        ApprovalReminder = "APPROVAL_REMINDER",
        QuoteProposalDelivery = "QUOTE_PROPOSAL_DELIVERY",
        QuoteExpiryWarning = "QUOTE_EXPIRY_WARNING",
        QuoteAcceptedConfirmation = "QUOTE_ACCEPTED_CONFIRMATION",
        OrderConfirmation = "ORDER_CONFIRMATION",
        FulfillmentUpdate = "FULFILLMENT_UPDATE",
        FalloutAlert = "FALLOUT_ALERT",
        SlaEscalation = "SLA_ESCALATION",
        ExternalWebhook = "EXTERNAL_WEBHOOK",
        InternalDigest = "INTERNAL_DIGEST",
    }
);

/// How much a communication matters (design notes, section 3): drives quiet hours, retries and
/// fallout on final failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Criticality {
    Low,
    Medium,
    High,
    VeryHigh,
}

impl CommunicationType {
    pub fn criticality(self) -> Criticality {
        use CommunicationType::*;
        match self {
            QuoteProposalDelivery => Criticality::VeryHigh,
            ApprovalTaskAssigned
            | QuoteAcceptedConfirmation
            | OrderConfirmation
            | FalloutAlert
            | SlaEscalation
            | ExternalWebhook => Criticality::High,
            ApprovalReminder | QuoteExpiryWarning | FulfillmentUpdate => Criticality::Medium,
            InternalDigest => Criticality::Low,
        }
    }
}

text_enum!(
    /// Opt-outs apply per category, never as one boolean.
    MessageCategory {
        Transactional = "TRANSACTIONAL",
        Operational = "OPERATIONAL",
        Marketing = "MARKETING",
    }
);

text_enum!(
    RecipientType {
        Contact = "CONTACT",
        Address = "ADDRESS",
        User = "USER",
        Group = "GROUP",
        WebhookSubscription = "WEBHOOK_SUBSCRIPTION",
    }
);

text_enum!(
    AttemptStatus {
        InProgress = "IN_PROGRESS",
        Accepted = "ACCEPTED",
        FailedRetryable = "FAILED_RETRYABLE",
        FailedFinal = "FAILED_FINAL",
        Abandoned = "ABANDONED", // the lease expired before the sender reported: outcome unknown
    }
);

/// A communication's id (what processes hold as `communicationId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct CommunicationId(pub Uuid);

impl CommunicationId {
    pub fn new() -> Self {
        CommunicationId(Uuid::now_v7())
    }
}

impl Default for CommunicationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CommunicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CommunicationId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(CommunicationId)
    }
}

/// A tenant of the CPQ/OMS landscape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantId(pub String);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the ledger decided before any provider is involved.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Queue for delivery.
    Queue,
    /// Policy said no (opted out, inactive recipient, …): a business status, no attempt.
    Suppress { code: String, message: String },
    /// Cannot be delivered at all (no recipient, invalid address, …): a business status.
    Fail { code: String, message: String },
}

/// The recipient as resolved by policy. The address is kept only on the delivery job.
#[derive(Debug, Clone)]
pub struct ResolvedRecipient {
    pub recipient_type: RecipientType,
    pub recipient_ref: String,
    pub channel: Channel,
    pub address: Option<String>,
    pub locale: Option<String>,
    /// The recipient's time zone (IANA name) and quiet hours, when known.
    pub timezone: Option<String>,
    pub quiet_hours: Option<(chrono::NaiveTime, chrono::NaiveTime)>,
}

/// The process instance that asked for the communication and waits for its outcome.
#[derive(Debug, Clone)]
pub struct ProcessOrigin {
    pub process_instance_id: String,
    pub business_key: Option<String>,
    pub activity_id: Option<String>,
    pub topic: String,
    pub task_id: String,
    /// Whether the process waits for CommunicationSent/CommunicationFailed.
    pub waits_for_outcome: bool,
}

/// What one check of the intake decided, stored with the communication.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub check: &'static str,
    pub outcome: DecisionOutcome,
    pub reason_code: String,
    pub detail: String,
}

text_enum!(
    DecisionOutcome {
        Allow = "ALLOW",
        Suppress = "SUPPRESS",
        Delay = "DELAY",
        /// The recipient cannot be reached at all (no address, unknown contact, …).
        Fail = "FAIL",
        /// Goes out in a digest rather than on its own.
        Digest = "DIGEST",
    }
);

/// A recipient as the ledger records it, with the intake's verdict: the address (kept only on
/// the delivery job), its hash and masked form, whether it may be sent to and when, and every
/// decision taken on the way.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub recipient: ResolvedRecipient,
    pub address_hash: Option<String>,
    pub address_masked: Option<String>,
    pub admission: Admission,
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
    pub decisions: Vec<Decision>,
}

impl Admitted {
    /// A recipient herald cannot send to (no address, no hash), or a parent record that stands
    /// for several recipients: queued until told otherwise, with no decision yet.
    pub fn unreachable(recipient: ResolvedRecipient) -> Admitted {
        Admitted {
            recipient,
            address_hash: None,
            address_masked: None,
            admission: Admission::Queue,
            not_before: None,
            decisions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_as_text() {
        for status in CommunicationStatus::ALL {
            assert_eq!(
                status.as_str().parse::<CommunicationStatus>().unwrap(),
                *status
            );
        }
        assert!("SENTX".parse::<CommunicationStatus>().is_err());
    }

    #[test]
    fn final_states_are_final() {
        use CommunicationStatus::*;
        for to in CommunicationStatus::ALL {
            assert!(!FailedFinal.can_become(*to));
            assert!(!Suppressed.can_become(*to));
        }
        assert!(Queued.can_become(Sending));
        assert!(Sending.can_become(Sent));
        assert!(!Sent.can_become(FailedFinal));
        assert!(
            !Queued.can_become(Sent),
            "nothing is sent without an attempt"
        );
    }

    #[test]
    fn outcomes_map_to_message_names() {
        assert_eq!(
            CommunicationStatus::Sent.outcome().unwrap().message_name(),
            "CommunicationSent"
        );
        assert_eq!(
            CommunicationStatus::FailedFinal
                .outcome()
                .unwrap()
                .message_name(),
            "CommunicationFailed"
        );
        assert_eq!(CommunicationStatus::FailedRetryable.outcome(), None);
    }
}
