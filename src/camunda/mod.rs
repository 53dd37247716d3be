//! Camunda 7: the REST client (typed requests, variables codec, error mapping) and the
//! external-task worker loop.

pub mod client;
pub mod error;
pub mod executions;
pub mod model;
pub mod variables;
pub mod waits;
pub mod worker;

pub use client::{
    CamundaClient, FailureReport, FetchAndLock, LockedTask, MessageCorrelation, TopicRequest,
};
pub use error::CamundaError;
pub use variables::{TypedValue, VariableError, Variables, VariablesExt};
