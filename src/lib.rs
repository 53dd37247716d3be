//! herald: a communication ledger and delivery engine for CPQ/OMS, running as Camunda 7
//! external-task workers.

pub mod api;
pub mod artifacts;
pub mod camunda;
pub mod check;
pub mod config;
pub mod content;
pub mod delivery;
pub mod feedback;
pub mod intake;
pub mod iso8601;
pub mod keyring;
pub mod ledger;
pub mod metrics;
pub mod pause;
pub mod policy;
pub mod relay;
pub mod runtime;
pub mod templates;
pub mod workers;
