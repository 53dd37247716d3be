//! herald's integration tests, in one binary: one module per capability, against the real
//! engine, PostgreSQL, SMTP servers and webhook receivers (`support` starts and reaches them).
//! The fault scenarios (`examples/faults.rs`) and the benchmark (`examples/bench.rs`) share
//! `support`.

mod support;

mod api_auth;
mod api_history;
mod api_idempotency;
mod api_openapi;
mod api_operate;
mod approval_notices;
mod artifacts;
mod bpmn_patterns;
mod correlation;
mod events_api;
mod feedback;
mod fetch_order;
mod fleet;
mod governance_bpmn;
mod governance_expressions;
mod governance_reach;
mod governance_releases;
mod health;
mod idempotency;
mod incidents;
mod jwt;
mod ledger_queue;
mod lock_loss;
mod metrics;
mod noise;
mod policy;
mod proposal_e2e;
mod resends;
mod retries;
mod secrets_at_rest;
mod templates_governance;
mod topic_rules;
mod webhooks;
