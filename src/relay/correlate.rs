//! Delivering one outcome message to the execution that waits for it.
//!
//! A waiter that recorded where its task ran (process definition, element, activity instance)
//! gets its message at the execution waiting after that task (see `camunda::waits`): one
//! branch of a multi-instance subprocess, one of two parallel sends. Older waiters are
//! correlated by process instance, as before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::camunda::executions::Triggered;
use crate::camunda::model::ProcessModel;
use crate::camunda::waits::{locate, TaskPlace, Tree, Verdict};
use crate::camunda::{CamundaClient, CamundaError, MessageCorrelation, TypedValue, Variables};
use crate::ledger::{CorrelationJob, TaskRun};

/// How one try ended.
#[derive(Debug)]
pub enum Outcome {
    Correlated,
    /// Not waiting yet: try again, until the deadline.
    NotYet(String),
    /// Nobody waits and nobody will: record it, do not retry.
    Unwaited(String),
    /// The engine failed or refused; `give_up_at_deadline` when waiting longer cannot help.
    Failed {
        error: String,
        give_up_at_deadline: bool,
    },
}

impl From<CamundaError> for Outcome {
    fn from(err: CamundaError) -> Outcome {
        // The engine down or overloaded: keep trying, the outcome must not be lost. A refusal
        // (a bad request, an unreadable model) is tried until the deadline.
        Outcome::Failed {
            give_up_at_deadline: !err.is_transient(),
            error: err.to_string(),
        }
    }
}

/// Process models read once per deployed definition (they never change).
const MODELS_KEPT: usize = 256;

/// Correlates outcomes; shares its model cache between tries.
pub struct Correlator {
    camunda: CamundaClient,
    waiting_topics: HashSet<String>,
    models: Mutex<HashMap<String, Arc<ProcessModel>>>,
}

impl Correlator {
    pub fn new(camunda: CamundaClient, waiting_topics: HashSet<String>) -> Correlator {
        Correlator {
            camunda,
            waiting_topics,
            models: Mutex::new(HashMap::new()),
        }
    }

    pub async fn correlate(&self, job: &CorrelationJob) -> Outcome {
        let mut variables = Variables::new();
        variables.insert(
            "communicationId".into(),
            TypedValue::string(job.communication_id.to_string()),
        );
        let located = match &job.task {
            Some(task) => self.to_waiting_execution(job, task, &variables).await,
            None => Ok(None),
        };
        match located {
            Ok(Some(outcome)) => outcome,
            Err(err) => err.into(),
            // No place recorded, or the history cannot tell where the task ran.
            Ok(None) => self.by_process_instance(job, variables).await,
        }
    }

    /// The message to the execution waiting after the task; `None` when where the task ran
    /// cannot be told (history level `none`).
    async fn to_waiting_execution(
        &self,
        job: &CorrelationJob,
        task: &TaskRun,
        variables: &Variables,
    ) -> Result<Option<Outcome>, CamundaError> {
        let Some(tree) = self
            .camunda
            .activity_instances(&job.process_instance_id)
            .await?
        else {
            return self.ended(job).await.map(Some);
        };
        let tree = Tree::new(&tree);
        let Some(chain) = self.chain_of(&tree, &task.activity_instance_id).await? else {
            return Ok(None);
        };
        let model = self.model(&task.process_definition_id).await?;
        let plan = model.plan_after(&task.activity_id, &|topic| {
            self.waiting_topics.contains(topic)
        });
        let subscriptions = self
            .camunda
            .message_subscriptions(&job.process_instance_id, &job.message_name)
            .await?;
        let place = TaskPlace {
            activity_id: &task.activity_id,
            chain: &chain,
        };
        Ok(Some(
            match locate(
                &model,
                &plan,
                &tree,
                &subscriptions,
                &job.message_name,
                &place,
            ) {
                Verdict::Trigger(execution) => {
                    self.trigger(&execution, &job.message_name, variables)
                        .await?
                }
                Verdict::Ambiguous(error) => Outcome::Failed {
                    error,
                    give_up_at_deadline: true,
                },
                Verdict::NotYet => Outcome::NotYet(format!(
                    "the process does not wait for '{}' after '{}' yet",
                    job.message_name, task.activity_id
                )),
                Verdict::Unwaited(reason) => Outcome::Unwaited(reason),
            },
        ))
    }

    /// The process instance is gone from the runtime: ended, if the history says so (a 404 of
    /// something else, a proxy or a redeployed REST root, must not lose the outcome).
    async fn ended(&self, job: &CorrelationJob) -> Result<Outcome, CamundaError> {
        let history = self
            .camunda
            .get_json(&format!(
                "/history/process-instance/{}",
                job.process_instance_id
            ))
            .await?;
        Ok(if history["endTime"].is_null() {
            Outcome::NotYet("the engine does not show the process instance".into())
        } else {
            Outcome::Unwaited("the process instance has ended".into())
        })
    }

    async fn trigger(
        &self,
        execution: &str,
        message: &str,
        variables: &Variables,
    ) -> Result<Outcome, CamundaError> {
        Ok(
            match self
                .camunda
                .trigger_message(execution, message, variables)
                .await?
            {
                Triggered::Done => {
                    tracing::info!(executionId = %execution, "message delivered to the waiting execution");
                    Outcome::Correlated
                }
                Triggered::Gone => {
                    Outcome::NotYet("the wait was gone when the message came; looking again".into())
                }
            },
        )
    }

    /// The task's activity instance and those around it, innermost first: from the tree while
    /// the task runs, from the history once it has ended (up to an instance still running).
    async fn chain_of(
        &self,
        tree: &Tree<'_>,
        activity_instance_id: &str,
    ) -> Result<Option<Vec<String>>, CamundaError> {
        let mut chain = vec![activity_instance_id.to_string()];
        let mut current = activity_instance_id.to_string();
        // Scopes nest a few levels deep; a history that never reaches the tree is no answer.
        for _ in 0..32 {
            if tree.contains(&current) {
                chain.pop();
                chain.extend(tree.chain(&current).into_iter().map(str::to_string));
                return Ok(Some(chain));
            }
            match self.camunda.historic_parent(&current).await? {
                Some(parent) => {
                    chain.push(parent.clone());
                    current = parent;
                }
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn model(&self, definition_id: &str) -> Result<Arc<ProcessModel>, CamundaError> {
        if let Some(model) = self.models.lock().expect("models").get(definition_id) {
            return Ok(model.clone());
        }
        let xml = self.camunda.definition_xml(definition_id).await?;
        let model = Arc::new(
            ProcessModel::parse(&xml)
                .map_err(|e| CamundaError::Decode(format!("{definition_id}: {e}")))?,
        );
        let mut models = self.models.lock().expect("models");
        if models.len() >= MODELS_KEPT {
            models.clear();
        }
        models.insert(definition_id.to_string(), model.clone());
        Ok(model)
    }

    /// Correlation by process instance: the one execution waiting for the message there.
    async fn by_process_instance(&self, job: &CorrelationJob, variables: Variables) -> Outcome {
        let message = MessageCorrelation {
            message_name: job.message_name.clone(),
            process_instance_id: Some(job.process_instance_id.clone()),
            business_key: None,
            tenant_id: None,
            process_variables: variables,
            all: false,
            result_enabled: true,
        };
        match self.camunda.correlate(&message).await {
            Ok(results) if !results.is_empty() => Outcome::Correlated,
            Ok(_) => Outcome::Failed {
                error: "nothing was correlated".into(),
                give_up_at_deadline: true,
            },
            // Not waiting yet (or any more): try again until the deadline.
            Err(err @ (CamundaError::CorrelationMismatch(_) | CamundaError::BadRequest { .. })) => {
                Outcome::Failed {
                    error: err.to_string(),
                    give_up_at_deadline: true,
                }
            }
            Err(err) => err.into(),
        }
    }
}
