//! The ledger: the only writer of communication records, delivery attempts, the outbox, the
//! delivery queue and the correlations back into Camunda.

pub mod correlation;
pub mod digest;
pub mod fallout;
pub mod feedback;
mod gauges;
pub mod history;
pub mod inbound;
pub mod inbox;
pub mod listing;
pub mod model;
pub mod outbox;
pub mod queue;
pub mod replay;
pub mod request;
pub mod resend;
pub mod retry;
pub mod suppression;
pub mod transition;
pub mod wakeup;

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

pub use correlation::{CorrelationJob, TaskRun};
pub use history::{
    ArtifactView, AttemptView, CommunicationDetail, CommunicationView, DecisionView, EventView,
};
pub use model::*;
pub use queue::{provider_name, AttemptResult, ClaimedJob};
pub use request::{
    Classification, NewCommunication, Provenance, Rendering, RequestOutcome, Subject,
    DEFAULT_PRIORITY,
};
pub use transition::{transition, AttemptEnd, StatusChange};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("communication {0} not found")]
    NotFound(CommunicationId),
    #[error("communication {id} cannot move from {from} to {to}")]
    IllegalTransition {
        id: CommunicationId,
        from: CommunicationStatus,
        to: CommunicationStatus,
    },
    #[error("corrupt ledger value: {0}")]
    Corrupt(#[from] UnknownValue),
    /// A sealed body that does not open (no keyring, a key id the ring lacks, a wrong key).
    #[error("sealed content: {0}")]
    Sealed(#[from] crate::keyring::KeyError),
    /// A stored value that does not read as herald wrote it (named, never shown: it may hold
    /// an address or a payload).
    #[error("communication {id}: its {what} do not read as herald wrote them")]
    Unreadable {
        id: CommunicationId,
        what: &'static str,
    },
}

impl From<sqlx::Error> for LedgerError {
    /// A value the ledger's enums do not know, read from a column, is a corrupt record, not
    /// an outage: it is never retried as one.
    fn from(err: sqlx::Error) -> LedgerError {
        if let sqlx::Error::ColumnDecode { source, .. } = &err {
            if let Some(unknown) = source.downcast_ref::<UnknownValue>() {
                return LedgerError::Corrupt(unknown.clone());
            }
        }
        LedgerError::Database(err)
    }
}

/// Connects a pool (lazily: the first query connects, so a database outage at start-up is a
/// retryable condition, not a crash).
pub fn connect_lazy(database_url: &str, max_connections: u32) -> Result<PgPool, LedgerError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before each use: it would double the round trips of every operation and the
        // queries of an idle fleet. A connection that broke fails its next query, and every
        // caller retries (the pool then opens a fresh one).
        .test_before_acquire(false)
        .connect_lazy(database_url)?)
}

#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
    correlation_deadline: Duration,
    /// Opens the sealed bodies of inbox notifications and the kept inputs of resends; seals
    /// the latter.
    keyring: Option<crate::keyring::Keyring>,
    /// How long what a resend needs is kept once a delivery job ended (zero: nothing is).
    resend_window: Duration,
}

impl Ledger {
    pub fn new(pool: PgPool, correlation_deadline: Duration) -> Ledger {
        Ledger {
            pool,
            correlation_deadline,
            keyring: None,
            resend_window: Duration::ZERO,
        }
    }

    /// The ledger that opens sealed inbox bodies and kept resend inputs with `keyring` (and
    /// seals the latter with it).
    pub fn with_keyring(mut self, keyring: Option<crate::keyring::Keyring>) -> Ledger {
        self.keyring = keyring;
        self
    }

    /// The ledger that keeps what a resend needs for `window` after a delivery job ended
    /// (`delivery.resend_window`), sealed with its keyring; without a keyring, or with a zero
    /// window, nothing is kept (see [`resend`]).
    pub fn keeping_resend_inputs(mut self, window: Duration) -> Ledger {
        self.resend_window = window;
        self
    }

    /// A listener for the notifications of `channel` (on a connection of its own).
    pub fn wakeup(&self, channel: &'static str) -> wakeup::Wakeup {
        wakeup::Wakeup::new(self.pool.clone(), channel)
    }

    /// The ledger's own connections: only its modules use them; other rooms get handles of
    /// their own on the same database (see `runtime.rs`).
    fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), LedgerError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The migrations of this build the database has not applied successfully (empty: the
    /// schema is current); an error when the database cannot be asked.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, LedgerError> {
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(MIGRATOR
            .iter()
            .map(|m| m.version)
            .filter(|v| applied.binary_search(v).is_err())
            .collect())
    }
}
