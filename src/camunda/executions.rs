//! The runtime state of a process instance, as the correlation relay reads it: the
//! activity-instance tree, the executions waiting for a message, the deployed model, and the
//! trigger that delivers a message to exactly one waiting execution.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::client::CamundaClient;
use super::error::CamundaError;
use super::variables::Variables;

/// A node of `GET /process-instance/{id}/activity-instances`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityInstance {
    pub id: String,
    /// The element id (for the root: the process definition id; for the body of a
    /// multi-instance activity: `<id>#multiInstanceBody`).
    pub activity_id: String,
    #[serde(default)]
    pub execution_ids: Vec<String>,
    #[serde(default)]
    pub child_activity_instances: Vec<ActivityInstance>,
    #[serde(default)]
    pub child_transition_instances: Vec<TransitionInstance>,
}

/// A token before or after an activity with an asynchronous continuation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransitionInstance {
    pub id: String,
    pub activity_id: String,
    #[serde(default)]
    pub execution_id: Option<String>,
}

/// An event subscription (`GET /event-subscription`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscription {
    #[serde(default)]
    pub execution_id: Option<String>,
    #[serde(default)]
    pub activity_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoricActivityInstance {
    #[serde(default)]
    parent_activity_instance_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefinitionXml {
    bpmn20_xml: String,
}

/// How a trigger of one execution's message subscription ended.
#[derive(Debug)]
pub enum Triggered {
    Done,
    /// The subscription is gone (another message took it, or the token moved on).
    Gone,
}

impl CamundaClient {
    /// The activity-instance tree of a running process instance; `None` once it has ended.
    pub async fn activity_instances(
        &self,
        process_instance_id: &str,
    ) -> Result<Option<ActivityInstance>, CamundaError> {
        match self
            .get_query::<Option<ActivityInstance>>(
                &format!("/process-instance/{process_instance_id}/activity-instances"),
                &[],
            )
            .await
        {
            Err(CamundaError::NotFound(_)) => Ok(None),
            other => other,
        }
    }

    /// The executions of a process instance subscribed to the message `name`.
    pub async fn message_subscriptions(
        &self,
        process_instance_id: &str,
        name: &str,
    ) -> Result<Vec<EventSubscription>, CamundaError> {
        self.get_query(
            "/event-subscription",
            &[
                ("processInstanceId", process_instance_id),
                ("eventType", "message"),
                ("eventName", name),
            ],
        )
        .await
    }

    /// The activity instance a (possibly finished) activity instance ran in, from the history;
    /// `None` when the history does not know it (history level `none`).
    pub async fn historic_parent(
        &self,
        activity_instance_id: &str,
    ) -> Result<Option<String>, CamundaError> {
        match self
            .get_query::<Option<HistoricActivityInstance>>(
                &format!("/history/activity-instance/{activity_instance_id}"),
                &[],
            )
            .await
        {
            Ok(found) => Ok(found.and_then(|h| h.parent_activity_instance_id)),
            Err(CamundaError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The BPMN XML of a deployed process definition.
    pub async fn definition_xml(&self, definition_id: &str) -> Result<String, CamundaError> {
        self.get_query::<Option<DefinitionXml>>(
            &format!("/process-definition/{definition_id}/xml"),
            &[],
        )
        .await?
        .map(|d| d.bpmn20_xml)
        .ok_or_else(|| CamundaError::Decode(format!("no XML for definition {definition_id}")))
    }

    /// Delivers the message `name` to the one execution `execution_id` waits with, setting
    /// `variables` as the message's.
    pub async fn trigger_message(
        &self,
        execution_id: &str,
        name: &str,
        variables: &Variables,
    ) -> Result<Triggered, CamundaError> {
        let path = format!("/execution/{execution_id}/messageSubscriptions/{name}/trigger");
        match self
            .call::<serde_json::Value>(
                Method::POST,
                &path,
                Some(&json!({ "variables": variables })),
                None,
            )
            .await
        {
            Ok(_) => Ok(Triggered::Done),
            Err(CamundaError::NotFound(_)) => Ok(Triggered::Gone),
            // The engine answers 500 when the execution has no such subscription (any more).
            Err(CamundaError::Server { message, .. })
                if message.contains("does not have a subscription") =>
            {
                Ok(Triggered::Gone)
            }
            Err(err) => Err(err),
        }
    }
}
