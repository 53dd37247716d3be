//! A hand-written client for the Camunda 7 REST API (`/engine-rest`), the parts herald uses.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::CamundaError;
use super::variables::Variables;

pub use super::fetch::{FetchAndLock, TopicRequest, DEFAULT_LONG_POLL_MARGIN};

/// An external task locked for this worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockedTask {
    pub id: String,
    pub topic_name: String,
    #[serde(default)]
    pub worker_id: Option<String>,
    #[serde(default)]
    pub retries: Option<i32>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub business_key: Option<String>,
    pub process_instance_id: String,
    #[serde(default)]
    pub process_definition_id: Option<String>,
    #[serde(default)]
    pub process_definition_key: Option<String>,
    #[serde(default)]
    pub activity_id: Option<String>,
    #[serde(default)]
    pub activity_instance_id: Option<String>,
    #[serde(default)]
    pub execution_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub variables: Variables,
    /// The task's `camunda:property` entries; one without a value (the engine sends null) is
    /// left out, so that a hand-written diagram cannot make a whole fetch unreadable.
    #[serde(default, deserialize_with = "present_properties")]
    pub extension_properties: BTreeMap<String, String>,
}

fn present_properties<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let properties: Option<BTreeMap<String, Option<String>>> =
        Deserialize::deserialize(deserializer)?;
    Ok(properties
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect())
}

/// A report of a technical failure (`/external-task/{id}/failure`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureReport {
    pub worker_id: String,
    pub error_message: String,
    pub error_details: String,
    pub retries: i32,
    pub retry_timeout: u64,
}

/// A message to correlate (`/message`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageCorrelation {
    pub message_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Variables::is_empty")]
    pub process_variables: Variables,
    pub all: bool,
    pub result_enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrelationResult {
    #[serde(default)]
    pub result_type: Option<String>,
    #[serde(default)]
    pub execution: Option<Value>,
    #[serde(default)]
    pub process_instance: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub deployed_process_definitions: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInstance {
    pub id: String,
    #[serde(default)]
    pub business_key: Option<String>,
    #[serde(default)]
    pub ended: bool,
}

/// A user task at runtime (`/task`) or in history (`/history/task`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTask {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub task_definition_key: Option<String>,
    #[serde(default)]
    pub process_instance_id: Option<String>,
    /// Runtime tasks: when the task was created.
    #[serde(default)]
    pub created: Option<String>,
    /// History: when the task started and ended.
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub due: Option<String>,
}

impl UserTask {
    /// When the task was created (runtime) or started (history).
    pub fn since(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.created.as_deref().or(self.start_time.as_deref())?;
        parse_engine_time(text)
    }
}

/// The engine writes times as `2026-11-26T10:15:30.123+0000`.
pub fn parse_engine_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityLink {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(rename = "type")]
    pub link_type: String,
}

/// A user of the engine's identity service.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub id: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

impl UserProfile {
    pub fn display_name(&self) -> String {
        let name = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if name.is_empty() {
            self.id.clone()
        } else {
            name
        }
    }
}

/// The engine's REST API.
#[derive(Clone)]
pub struct CamundaClient {
    http: reqwest::Client,
    base: String,
    retry: ExponentialBuilder,
}

impl CamundaClient {
    /// `base` is the REST root, e.g. `http://127.0.0.1:8080/engine-rest`.
    pub fn new(base: &str) -> Result<CamundaClient, CamundaError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(CamundaError::Unavailable)?;
        Ok(CamundaClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            retry: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(4)
                .with_jitter(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Option<T>, CamundaError> {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(CamundaError::Unavailable)?;
        let status = response.status();
        let text = response.text().await.map_err(CamundaError::Unavailable)?;
        if !status.is_success() {
            return Err(CamundaError::from_response(status, &text));
        }
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CamundaError::Decode(format!("{path}: {e}")))
    }

    /// A call retried on transient errors (engine down, 5xx overload, optimistic locking).
    async fn call_retried<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Option<T>, CamundaError> {
        (|| self.call::<T>(method.clone(), path, Some(&body), None))
            .retry(self.retry)
            .when(|e: &CamundaError| e.is_transient())
            .notify(|err: &CamundaError, after: Duration| {
                tracing::warn!(path, error = %err, retry_in_ms = after.as_millis() as u64, "engine call failed, retrying");
            })
            .await
    }

    /// `GET /engine`: the engines this REST root serves (a cheap liveness check).
    pub async fn engines(&self) -> Result<Vec<Value>, CamundaError> {
        Ok(self
            .call(Method::GET, "/engine", None, None)
            .await?
            .unwrap_or_default())
    }

    /// fetchAndLock with long polling, given up after the long poll plus
    /// [`DEFAULT_LONG_POLL_MARGIN`]; not retried here (the worker loop backs off itself).
    pub async fn fetch_and_lock(
        &self,
        request: &FetchAndLock,
    ) -> Result<Vec<LockedTask>, CamundaError> {
        self.fetch_and_lock_within(request, DEFAULT_LONG_POLL_MARGIN)
            .await
    }

    /// fetchAndLock that waits at most its long poll plus `margin` for the answer: a
    /// connection that stays silent longer (an engine or proxy that stopped answering without
    /// closing) ends in [`CamundaError::Unavailable`] with a timeout, and the caller polls anew.
    pub async fn fetch_and_lock_within(
        &self,
        request: &FetchAndLock,
        margin: Duration,
    ) -> Result<Vec<LockedTask>, CamundaError> {
        let body =
            serde_json::to_value(request).map_err(|e| CamundaError::Decode(e.to_string()))?;
        Ok(self
            .call(
                Method::POST,
                "/external-task/fetchAndLock",
                Some(&body),
                Some(request.http_timeout(margin)),
            )
            .await?
            .unwrap_or_default())
    }

    pub async fn complete(
        &self,
        task_id: &str,
        worker_id: &str,
        variables: &Variables,
    ) -> Result<(), CamundaError> {
        let body = json!({ "workerId": worker_id, "variables": variables });
        self.call_retried::<Value>(
            Method::POST,
            &format!("/external-task/{task_id}/complete"),
            body,
        )
        .await
        .map(|_| ())
    }

    pub async fn handle_failure(
        &self,
        task_id: &str,
        report: &FailureReport,
    ) -> Result<(), CamundaError> {
        let body = serde_json::to_value(report).map_err(|e| CamundaError::Decode(e.to_string()))?;
        self.call_retried::<Value>(
            Method::POST,
            &format!("/external-task/{task_id}/failure"),
            body,
        )
        .await
        .map(|_| ())
    }

    pub async fn bpmn_error(
        &self,
        task_id: &str,
        worker_id: &str,
        error_code: &str,
        error_message: &str,
        variables: &Variables,
    ) -> Result<(), CamundaError> {
        let body = json!({
            "workerId": worker_id,
            "errorCode": error_code,
            "errorMessage": error_message,
            "variables": variables,
        });
        self.call_retried::<Value>(
            Method::POST,
            &format!("/external-task/{task_id}/bpmnError"),
            body,
        )
        .await
        .map(|_| ())
    }

    /// Moves the lock expiry to `new_duration` from now.
    pub async fn extend_lock(
        &self,
        task_id: &str,
        worker_id: &str,
        new_duration: Duration,
    ) -> Result<(), CamundaError> {
        let body = json!({ "workerId": worker_id, "newDuration": new_duration.as_millis() as u64 });
        self.call_retried::<Value>(
            Method::POST,
            &format!("/external-task/{task_id}/extendLock"),
            body,
        )
        .await
        .map(|_| ())
    }

    /// Gives the task back so that another worker can fetch it at once.
    pub async fn unlock(&self, task_id: &str) -> Result<(), CamundaError> {
        self.call_retried::<Value>(
            Method::POST,
            &format!("/external-task/{task_id}/unlock"),
            json!({}),
        )
        .await
        .map(|_| ())
    }

    /// Correlates a message and returns what it reached. With `all: false`, nothing waiting is
    /// `CorrelationMismatch`; with `all: true` it is an empty list.
    pub async fn correlate(
        &self,
        message: &MessageCorrelation,
    ) -> Result<Vec<CorrelationResult>, CamundaError> {
        let body =
            serde_json::to_value(message).map_err(|e| CamundaError::Decode(e.to_string()))?;
        Ok(self
            .call::<Vec<CorrelationResult>>(Method::POST, "/message", Some(&body), None)
            .await?
            .unwrap_or_default())
    }

    /// Deploys files (BPMN, DMN, forms) as one deployment; the engine leaves unchanged resources out.
    pub async fn deploy(
        &self,
        name: &str,
        files: &[(String, Vec<u8>)],
    ) -> Result<Deployment, CamundaError> {
        let mut form = reqwest::multipart::Form::new()
            .text("deployment-name", name.to_string())
            .text("deployment-source", "herald")
            .text("enable-duplicate-filtering", "true")
            .text("deploy-changed-only", "true");
        for (file_name, bytes) in files {
            let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(file_name.clone());
            form = form.part(file_name.clone(), part);
        }
        let response = self
            .http
            .post(format!("{}/deployment/create", self.base))
            .multipart(form)
            .send()
            .await
            .map_err(CamundaError::Unavailable)?;
        let status = response.status();
        let text = response.text().await.map_err(CamundaError::Unavailable)?;
        if !status.is_success() {
            return Err(CamundaError::from_response(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| CamundaError::Decode(format!("deployment: {e}")))
    }

    /// Reads every model file of a folder (BPMN, DMN, CMMN, forms) and deploys them together.
    pub async fn deploy_dir(&self, name: &str, dir: &Path) -> Result<Deployment, DeployDirError> {
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| DeployDirError::Read(dir.display().to_string(), e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| DeployDirError::Read(dir.display().to_string(), e))?
                .path();
            let model = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("bpmn" | "dmn" | "cmmn" | "form" | "html")
            );
            if model && path.is_file() {
                let bytes = std::fs::read(&path)
                    .map_err(|e| DeployDirError::Read(path.display().to_string(), e))?;
                let file_name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("process.bpmn")
                    .to_string();
                files.push((file_name, bytes));
            }
        }
        if files.is_empty() {
            return Err(DeployDirError::Empty(dir.display().to_string()));
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(self.deploy(name, &files).await?)
    }

    /// Starts the latest version of a process definition.
    pub async fn start_process(
        &self,
        definition_key: &str,
        business_key: &str,
        variables: &Variables,
    ) -> Result<ProcessInstance, CamundaError> {
        let body = json!({ "businessKey": business_key, "variables": variables });
        self.call::<ProcessInstance>(
            Method::POST,
            &format!("/process-definition/key/{definition_key}/start"),
            Some(&body),
            None,
        )
        .await?
        .ok_or_else(|| CamundaError::Decode("empty answer to process start".into()))
    }

    /// Any GET, for reading history and runtime state (tests, demo, operations).
    pub async fn get_json(&self, path_and_query: &str) -> Result<Value, CamundaError> {
        Ok(self
            .call::<Value>(Method::GET, path_and_query, None, None)
            .await?
            .unwrap_or(Value::Null))
    }

    /// A GET with query parameters (encoded), read as `T`; a missing body reads as `T::default()`.
    pub(super) async fn get_query<T: DeserializeOwned + Default>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, CamundaError> {
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let full = if encoded.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{encoded}")
        };
        (|| self.call::<T>(Method::GET, &full, None, None))
            .retry(self.retry)
            .when(|e: &CamundaError| e.is_transient())
            .await
            .map(Option::unwrap_or_default)
    }

    /// The active user tasks of a process instance with this task definition key.
    pub async fn active_tasks(
        &self,
        process_instance_id: &str,
        task_definition_key: &str,
    ) -> Result<Vec<UserTask>, CamundaError> {
        self.get_query(
            "/task",
            &[
                ("processInstanceId", process_instance_id),
                ("taskDefinitionKey", task_definition_key),
            ],
        )
        .await
    }

    /// The user tasks of a process instance with this key, newest first, ended ones included.
    pub async fn historic_tasks(
        &self,
        process_instance_id: &str,
        task_definition_key: &str,
    ) -> Result<Vec<UserTask>, CamundaError> {
        self.get_query(
            "/history/task",
            &[
                ("processInstanceId", process_instance_id),
                ("taskDefinitionKey", task_definition_key),
                ("sortBy", "startTime"),
                ("sortOrder", "desc"),
            ],
        )
        .await
    }

    pub async fn identity_links(&self, task_id: &str) -> Result<Vec<IdentityLink>, CamundaError> {
        self.get_query(&format!("/task/{task_id}/identity-links"), &[])
            .await
    }

    /// A user's profile; None when the engine knows no such user.
    pub async fn user_profile(&self, user_id: &str) -> Result<Option<UserProfile>, CamundaError> {
        let path = format!(
            "/user/{}/profile",
            url::form_urlencoded::byte_serialize(user_id.as_bytes()).collect::<String>()
        );
        match self
            .call::<UserProfile>(Method::GET, &path, None, None)
            .await
        {
            Ok(profile) => Ok(profile),
            Err(CamundaError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Whether the engine's identity service makes `group_id` a group of `tenant_id` (a
    /// tenant-group membership: `PUT /tenant/{tenant}/group-members/{group}`).
    pub async fn group_of_tenant(
        &self,
        group_id: &str,
        tenant_id: &str,
    ) -> Result<bool, CamundaError> {
        #[derive(serde::Deserialize, Default)]
        struct Count {
            count: u64,
        }
        // Asked once, briefly: the caller waits on it (an API request holding its key's lease).
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("id", group_id), ("memberOfTenant", tenant_id)])
            .finish();
        let found: Count = self
            .call(
                Method::GET,
                &format!("/group/count?{query}"),
                None,
                Some(Duration::from_secs(5)),
            )
            .await?
            .unwrap_or_default();
        Ok(found.count > 0)
    }

    /// The members of a group (with their profiles).
    pub async fn group_members(&self, group_id: &str) -> Result<Vec<UserProfile>, CamundaError> {
        self.get_query(
            "/user",
            &[
                ("memberOfGroup", group_id),
                ("sortBy", "userId"),
                ("sortOrder", "asc"),
            ],
        )
        .await
    }

    /// Sets the retries of an external task (what Cockpit's "increment retries" does).
    pub async fn set_retries(&self, task_id: &str, retries: i32) -> Result<(), CamundaError> {
        self.call::<Value>(
            Method::PUT,
            &format!("/external-task/{task_id}/retries"),
            Some(&json!({ "retries": retries })),
            None,
        )
        .await
        .map(|_| ())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeployDirError {
    #[error("cannot read {0}: {1}")]
    Read(String, #[source] std::io::Error),
    #[error("no .bpmn file in {0}")]
    Empty(String),
    #[error(transparent)]
    Engine(#[from] CamundaError),
}
