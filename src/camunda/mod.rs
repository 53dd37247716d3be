//! Camunda 7: the REST client (typed requests, variables codec, error mapping), the
//! external-task worker loop, its fetch requests and the lock-loss limit.

pub mod client;
pub mod error;
pub mod executions;
pub mod fetch;
pub mod lock_loss;
pub mod model;
pub mod variables;
pub mod waits;
pub mod worker;

pub use client::{
    CamundaClient, FailureReport, FetchAndLock, LockedTask, MessageCorrelation, TopicRequest,
};
pub use error::CamundaError;
pub use variables::{TypedValue, VariableError, Variables, VariablesExt};
