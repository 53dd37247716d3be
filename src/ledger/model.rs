//! The ledger's vocabulary: ids, statuses, channels, categories, failure classes, event types,
//! and what the intake hands the ledger about a recipient. Every closed set is an enum stored
//! as text: sqlx encodes and decodes it directly, a value the enum does not know is an error
//! (never a default), and the database's CHECK constraints are generated from the same lists.

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

        /// The API's schema of the set: a string, one of the texts.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        /// Compares with the value as stored (`status == "SENT"`).
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl TextEnum for $name {
            const NAME: &'static str = stringify!($name);
            fn texts() -> Vec<&'static str> {
                vec![$($text),+]
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }
    };
}

/// A closed set of values stored as text: its name and its values, for the database's CHECK
/// constraints.
pub trait TextEnum {
    const NAME: &'static str;
    fn texts() -> Vec<&'static str>;
}

/// The CHECK constraint that keeps `column` to the values of `E` (what the migrations say,
/// generated from the enum: a test holds the two together).
pub fn check_constraint<E: TextEnum>(column: &str) -> String {
    let values: Vec<String> = E::texts().iter().map(|t| format!("'{t}'")).collect();
    format!("CHECK ({column} IN ({}))", values.join(", "))
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown {kind} '{value}'")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

text_enum!(
    /// The lifecycle of a communication (docs/architecture.md, "Design notes").
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
    pub fn event_type(self) -> Option<EventType> {
        use CommunicationStatus::*;
        match self {
            Requested => Some(EventType::CommunicationRequested),
            Suppressed => Some(EventType::CommunicationSuppressed),
            Queued => Some(EventType::CommunicationQueued),
            Sent => Some(EventType::CommunicationSent),
            FailedFinal => Some(EventType::CommunicationFailed),
            Bounced => Some(EventType::CommunicationBounced),
            Delivered => Some(EventType::CommunicationDelivered),
            Opened => Some(EventType::CommunicationOpened),
            Clicked => Some(EventType::CommunicationClicked),
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
    /// Communication types (docs/architecture.md, "Design notes").
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

/// How much a communication matters (docs/architecture.md): drives quiet hours, retries and
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

text_enum!(
    /// Why an attempt failed, channel-neutral (docs/architecture.md, "Design notes").
    FailureClass {
        /// The provider could not be reached: connection refused, DNS, network, HTTP 5xx.
        ProviderUnavailable = "PROVIDER_UNAVAILABLE",
        /// No answer in time.
        Timeout = "TIMEOUT",
        /// The provider asks us to slow down: SMTP 421, HTTP 429.
        RateLimited = "RATE_LIMITED",
        /// A temporary refusal: SMTP 45x.
        TemporaryRejection = "TEMPORARY_REJECTION",
        /// The address does not exist or is malformed: SMTP 550/551/553, 501 on RCPT.
        InvalidRecipient = "INVALID_RECIPIENT",
        /// Any other permanent refusal: SMTP 5xx, webhook 4xx.
        PermanentRejection = "PERMANENT_REJECTION",
        /// Our own configuration is wrong (template, credentials, TLS): no retry fixes it by
        /// itself.
        Configuration = "CONFIGURATION",
        /// The endpoint was disabled after a run of failures (or said it is gone): the message
        /// is dead-lettered until an operator enables the endpoint and replays it.
        EndpointDisabled = "ENDPOINT_DISABLED",
    }
);

impl FailureClass {
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureClass::ProviderUnavailable
                | FailureClass::Timeout
                | FailureClass::RateLimited
                | FailureClass::TemporaryRejection
        )
    }
}

text_enum!(
    /// The events of the outbox: one for each status a communication enters that others hear of.
    EventType {
        CommunicationRequested = "CommunicationRequested",
        CommunicationSuppressed = "CommunicationSuppressed",
        CommunicationQueued = "CommunicationQueued",
        CommunicationSent = "CommunicationSent",
        CommunicationFailed = "CommunicationFailed",
        CommunicationBounced = "CommunicationBounced",
        CommunicationDelivered = "CommunicationDelivered",
        CommunicationOpened = "CommunicationOpened",
        CommunicationClicked = "CommunicationClicked",
    }
);

/// What the outbox relay does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAction {
    /// The outcome to correlate into the waiting processes, if any wait.
    pub correlate: Option<Outcome>,
    /// Whether it raises fallout (a critical communication that failed for good or bounced).
    pub fallout: bool,
}

impl EventType {
    /// What the relay does with this event: the one table of it.
    pub fn relay_action(self) -> RelayAction {
        use EventType::*;
        let (correlate, fallout) = match self {
            CommunicationSent => (Some(Outcome::Sent), false),
            CommunicationFailed => (Some(Outcome::Failed), true),
            CommunicationSuppressed => (Some(Outcome::Failed), false),
            CommunicationBounced => (None, true),
            CommunicationRequested
            | CommunicationQueued
            | CommunicationDelivered
            | CommunicationOpened
            | CommunicationClicked => (None, false),
        };
        RelayAction { correlate, fallout }
    }

    /// Whether the relay acts on this event; the others are written already published.
    pub fn is_relayed(self) -> bool {
        let action = self.relay_action();
        action.correlate.is_some() || action.fallout
    }

    /// The events the relay acts on.
    pub fn relayed() -> Vec<EventType> {
        EventType::ALL
            .iter()
            .copied()
            .filter(|e| e.is_relayed())
            .collect()
    }
}

text_enum!(
    /// An outbox event's publication.
    OutboxStatus {
        Pending = "PENDING",
        Published = "PUBLISHED",
    }
);

text_enum!(
    /// A correlation into Camunda: waiting to be tried, done, given up after its deadline, or
    /// not wanted any more (the process went on without the message).
    CorrelationStatus {
        Pending = "PENDING",
        Correlated = "CORRELATED",
        Failed = "FAILED",
        Unwaited = "UNWAITED",
    }
);

text_enum!(
    /// A fallout signal: waiting for its alerts, raised, or given up (a broken rule).
    FalloutStatus {
        Pending = "PENDING",
        Raised = "RAISED",
        Failed = "FAILED",
    }
);

text_enum!(
    /// A webhook subscription: sent to, or disabled (its messages dead-lettered).
    SubscriptionStatus {
        Active = "ACTIVE",
        Disabled = "DISABLED",
    }
);

/// The columns the database keeps to an enum's values, with their CHECK constraints
/// (added NOT VALID by migrations such as `20261126000020_enum_checks.sql` and validated by the
/// next one; a test holds the last definition of each to these).
pub fn checked_columns() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "communication_record",
            "status",
            check_constraint::<CommunicationStatus>("status"),
        ),
        (
            "communication_record",
            "channel",
            check_constraint::<Channel>("channel"),
        ),
        (
            "communication_record",
            "communication_type",
            check_constraint::<CommunicationType>("communication_type"),
        ),
        (
            "communication_record",
            "message_category",
            check_constraint::<MessageCategory>("message_category"),
        ),
        (
            "communication_record",
            "recipient_type",
            check_constraint::<RecipientType>("recipient_type"),
        ),
        (
            "communication_delivery_attempt",
            "status",
            check_constraint::<AttemptStatus>("status"),
        ),
        (
            "communication_delivery_attempt",
            "failure_class",
            check_constraint::<FailureClass>("failure_class"),
        ),
        (
            "communication_outbox",
            "status",
            check_constraint::<OutboxStatus>("status"),
        ),
        (
            "communication_outbox",
            "event_type",
            check_constraint::<EventType>("event_type"),
        ),
        (
            "camunda_correlation",
            "status",
            check_constraint::<CorrelationStatus>("status"),
        ),
        (
            "fallout_signal",
            "status",
            check_constraint::<FalloutStatus>("status"),
        ),
        (
            "communication_decision",
            "outcome",
            check_constraint::<DecisionOutcome>("outcome"),
        ),
        (
            "webhook_subscription",
            "status",
            check_constraint::<SubscriptionStatus>("status"),
        ),
        (
            "inbox_notification",
            "communication_type",
            check_constraint::<CommunicationType>("communication_type"),
        ),
    ]
}

/// A communication's id (what processes hold as `communicationId`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
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
    /// The recipient's market (`DE`, `CH`): a template version for it wins over the one for
    /// all markets.
    pub market: Option<String>,
}

/// The process instance that asked for the communication and waits for its outcome.
#[derive(Debug, Clone)]
pub struct ProcessOrigin {
    pub process_instance_id: String,
    pub business_key: Option<String>,
    pub activity_id: Option<String>,
    /// Where the task ran: the relay finds the execution waiting after it from these.
    pub process_definition_id: Option<String>,
    pub activity_instance_id: Option<String>,
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

impl Decision {
    /// The decision a resend records first: what it resends, and why.
    pub fn resend(original: CommunicationId, reason: Option<String>) -> Decision {
        Decision {
            check: "resend",
            outcome: DecisionOutcome::Allow,
            reason_code: "RESEND".into(),
            detail: match reason {
                Some(reason) => format!("resend of {original}: {reason}"),
                None => format!("resend of {original}"),
            },
        }
    }
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
mod tests;
