//! `approval-reminder` and `escalation`: internal notices about a user task of the same process.
//!
//! The service task names the user task with the extension property (or variable)
//! `taskDefinitionKey`; a variable wins over the model's extension property.
//! - approval-reminder: to the active task's assignee, or (unassigned) to its candidate users and
//!   the members of its candidate groups. Fire-and-observe.
//! - escalation: to the members of the group `escalationGroup` (or the user `escalationUser`),
//!   naming the overdue task, its assignee and how long it has waited.
//!
//! One record per recipient under a parent communication, whose id the task is completed with.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::camunda::client::UserTask;
use crate::camunda::worker::{BoxFuture, HandlerOutcome, TaskHandler, TechnicalFailure};
use crate::camunda::{CamundaError, LockedTask, VariablesExt};
use crate::intake::{Intake, IntakeError, Purpose, HINT_KEY_PATTERN};
use crate::ledger::{
    Admission, Admitted, Channel, NewCommunication, ProcessOrigin, Provenance, RecipientType,
    Rendering, ResolvedRecipient, Subject,
};
use crate::policy::identity::{engine_user, user_ref};
use crate::policy::{derive_key, Resolution};
use crate::templates::{origins_of, FieldKind, PassedField, Source};

use super::inputs::{InputKind, InputPattern, InputSource, TaskInput, LOCALE_PATTERN};
use super::{
    business_key, completed_with_communication, permanent, task_failure, TopicConfig,
    HINT_VARIABLE_TYPE,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Reminder,
    Escalation,
}

/// The user task a notice is about: an extension property of the service task (or variable).
const fn task_definition_key(description: &'static str) -> TaskInput {
    TaskInput {
        name: "taskDefinitionKey",
        kind: InputKind::String,
        required: true,
        pattern: Some(InputPattern {
            regex: "[A-Za-z_][A-Za-z0-9_.-]*",
            message: "The id of a user task of this process, e.g. approve_quote.",
        }),
        label: "User task",
        description,
        source: InputSource::ExtensionProperty,
    }
}

const TENANT_ID: TaskInput = TaskInput {
    name: "tenantId",
    kind: InputKind::String,
    required: false,
    pattern: None,
    label: "Tenant",
    description: "The tenant whose preferences and templates apply. Empty: the process's tenant, else default.",
    source: InputSource::Variable,
};

const NOTICE_LOCALE: TaskInput = TaskInput {
    name: "locale",
    kind: InputKind::String,
    required: false,
    pattern: Some(LOCALE_PATTERN),
    label: "Locale",
    description: "The language of the notice, e.g. de-AT (then de, then en). Empty: en.",
    source: InputSource::Variable,
};

/// What an approval reminder reads ([`task_setting`]: a variable, else the extension property).
pub const REMINDER_INPUTS: &[TaskInput] = &[
    task_definition_key("The user task to remind about (its id in this process): herald reminds its assignee, else its candidate users and the members of its candidate groups."),
    TENANT_ID,
    NOTICE_LOCALE,
];

/// What an escalation reads ([`task_setting`]: a variable, else the extension property).
pub const ESCALATION_INPUTS: &[TaskInput] = &[
    task_definition_key("The overdue user task (its id in this process): the notice names it, its assignee and how long it waited."),
    TaskInput {
        name: "escalationGroup",
        kind: InputKind::String,
        required: false,
        pattern: None,
        label: "Escalation group",
        description: "The Camunda group whose members are notified. Give this or an escalation user; the group wins.",
        source: InputSource::ExtensionProperty,
    },
    TaskInput {
        name: "escalationUser",
        kind: InputKind::String,
        required: false,
        pattern: None,
        label: "Escalation user",
        description: "The Camunda user notified when no escalation group is given.",
        source: InputSource::ExtensionProperty,
    },
    TENANT_ID,
    NOTICE_LOCALE,
];

pub struct TaskNotice {
    topic: TopicConfig,
    purpose: Purpose,
    intake: Intake,
    kind: NoticeKind,
}

/// A setting of the service task: a process or input variable, else the task's extension
/// property (the model's default). A null variable (an input parameter without value) or an
/// empty extension property counts as absent.
fn task_setting(task: &LockedTask, name: &str) -> Result<Option<String>, TechnicalFailure> {
    let variable = task
        .variables
        .opt_str(name)
        .map_err(|e| permanent(format!("{}: {e}", task.topic_name), HINT_VARIABLE_TYPE))?;
    Ok(variable.map(|v| v.trim().to_string()).or_else(|| {
        task.extension_properties
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }))
}

/// `2 h 5 min`, `40 min`, `3 d 4 h`.
pub fn waited(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (now - since).num_minutes().max(0);
    let (days, hours, mins) = (minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{mins} min"),
        (0, _) => format!("{hours} h {mins} min"),
        _ => format!("{days} d {hours} h"),
    }
}

/// What a reminder's or an escalation's template receives, and where each value comes from
/// (the engine's users, tasks and process). `herald check` judges every version of the topic's
/// family that can be selected against it; a test holds it to [`notice_payload`].
pub const NOTICE_PAYLOAD: &[PassedField] = &[
    PassedField {
        name: "recipientName",
        kind: FieldKind::String,
        always: true,
        source: Source::Engine("the user's name"),
    },
    PassedField {
        name: "taskName",
        kind: FieldKind::String,
        always: true,
        source: Source::Engine("the user task's name"),
    },
    PassedField {
        name: "businessKey",
        kind: FieldKind::String,
        always: true,
        source: Source::Engine("the process business key"),
    },
    PassedField {
        name: "waitedFor",
        kind: FieldKind::String,
        always: true,
        source: Source::Herald("waiting time"),
    },
    PassedField {
        name: "assigneeName",
        kind: FieldKind::String,
        always: true,
        source: Source::Engine("the assignee's name"),
    },
    PassedField {
        name: "reminderNo",
        kind: FieldKind::Integer,
        always: true,
        source: Source::Herald("reminder number"),
    },
];

/// The payload of a notice's template ([`NOTICE_PAYLOAD`] says what each field is).
fn notice_payload(
    recipient_name: &str,
    task_name: &str,
    business_key: &str,
    waited_for: &str,
    assignee_name: &str,
    reminder_no: i64,
) -> serde_json::Value {
    json!({
        "recipientName": recipient_name,
        "taskName": task_name,
        "businessKey": business_key,
        "waitedFor": waited_for,
        "assigneeName": assignee_name,
        "reminderNo": reminder_no,
    })
}

fn engine_down(topic: &str, err: CamundaError) -> TechnicalFailure {
    task_failure(IntakeError::engine_down(topic, err))
}

impl TaskNotice {
    pub fn new(topic: TopicConfig, intake: Intake, kind: NoticeKind) -> TaskNotice {
        TaskNotice {
            purpose: topic.purpose(),
            topic,
            intake,
            kind,
        }
    }

    /// The user task the notice is about.
    async fn user_task(
        &self,
        task: &LockedTask,
        key: &str,
    ) -> Result<Option<UserTask>, TechnicalFailure> {
        let camunda = &self.intake.camunda;
        let topic = &self.topic.topic;
        match self.kind {
            // A reminder is only for a task still waiting.
            NoticeKind::Reminder => Ok(camunda
                .active_tasks(&task.process_instance_id, key)
                .await
                .map_err(|e| engine_down(topic, e))?
                .into_iter()
                .next()),
            // An interrupting timer has cancelled the task by now: read it from history.
            NoticeKind::Escalation => Ok(camunda
                .historic_tasks(&task.process_instance_id, key)
                .await
                .map_err(|e| engine_down(topic, e))?
                .into_iter()
                .next()),
        }
    }

    /// The engine users to notify, sorted and without duplicates.
    async fn recipients(
        &self,
        task: &LockedTask,
        user_task: &UserTask,
    ) -> Result<BTreeSet<String>, TechnicalFailure> {
        let camunda = &self.intake.camunda;
        let topic = &self.topic.topic;
        let mut users = BTreeSet::new();
        match self.kind {
            NoticeKind::Reminder => {
                if let Some(assignee) = user_task.assignee.as_ref().filter(|a| !a.is_empty()) {
                    users.insert(assignee.clone());
                    return Ok(users);
                }
                for link in camunda
                    .identity_links(&user_task.id)
                    .await
                    .map_err(|e| engine_down(topic, e))?
                {
                    if link.link_type != "candidate" {
                        continue;
                    }
                    if let Some(user) = link.user_id {
                        users.insert(user);
                    }
                    if let Some(group) = link.group_id {
                        for member in camunda
                            .group_members(&group)
                            .await
                            .map_err(|e| engine_down(topic, e))?
                        {
                            users.insert(member.id);
                        }
                    }
                }
            }
            NoticeKind::Escalation => {
                let group = task_setting(task, "escalationGroup")?;
                let user = task_setting(task, "escalationUser")?;
                match (group, user) {
                    (Some(group), _) => {
                        for member in camunda.group_members(&group).await.map_err(|e| engine_down(topic, e))? {
                            users.insert(member.id);
                        }
                    }
                    (None, Some(user)) => {
                        users.insert(user);
                    }
                    (None, None) => {
                        return Err(permanent(
                            format!("{topic}: set the extension property escalationGroup or escalationUser"),
                            "The escalation service task must say whom to notify: a Camunda group (escalationGroup) or user (escalationUser).",
                        ))
                    }
                }
            }
        }
        Ok(users)
    }

    async fn run(&self, task: &LockedTask) -> Result<String, TechnicalFailure> {
        let topic = &self.topic.topic;
        let key = task_setting(task, "taskDefinitionKey")?.ok_or_else(|| {
            permanent(
                format!("{topic}: set the extension property taskDefinitionKey"),
                "The service task must name the user task it is about with the extension property (or input variable) taskDefinitionKey.",
            )
        })?;
        let business_key = business_key(task)?;
        let tenant_id = task_setting(task, "tenantId")?
            .or_else(|| task.tenant_id.clone())
            .unwrap_or_else(|| "default".into());
        let locale = task_setting(task, "locale")?;
        let template = self
            .intake
            .family_template(
                &self.purpose,
                &self.topic.template_family,
                locale.as_deref(),
                None,
            )
            .map_err(task_failure)?;

        let user_task = self.user_task(task, &key).await?;
        let now = Utc::now();
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        values.insert("businessKey", business_key.clone());
        values.insert("externalTaskId", task.id.clone());
        values.insert("taskDefinitionKey", key.clone());
        values.insert("tenantId", tenant_id.clone());
        let key_error =
            |e: crate::policy::KeyError| permanent(format!("{topic}: {e}"), HINT_KEY_PATTERN);

        let origin = ProcessOrigin::from_task(task, &business_key, self.topic.waits_for_outcome);
        let (children, parent_admission, parent_ref, about_task) = match &user_task {
            None => (
                Vec::new(),
                Admission::Suppress {
                    code: "TASK_NOT_ACTIVE".into(),
                    message: format!(
                        "no active user task '{key}' in the process instance: nothing to remind"
                    ),
                },
                format!("task:{key}"),
                None,
            ),
            Some(user_task) => {
                values.insert("taskId", user_task.id.clone());
                let ordinal = match self.kind {
                    NoticeKind::Reminder => {
                        self.intake
                            .ledger
                            .count_about_task(topic, &user_task.id)
                            .await
                            .map_err(|e| task_failure(IntakeError::ledger_down(topic, e)))?
                            + 1
                    }
                    NoticeKind::Escalation => 1,
                };
                values.insert("ordinal", ordinal.to_string());
                let users = self.recipients(task, user_task).await?;
                let assignee_name = match user_task.assignee.as_deref().filter(|a| !a.is_empty()) {
                    Some(assignee) => match self.intake.camunda.user_profile(assignee).await {
                        Ok(Some(profile)) => profile.display_name(),
                        Ok(None) => assignee.to_string(),
                        Err(e) => return Err(engine_down(topic, e)),
                    },
                    None => "nobody (unassigned)".into(),
                };
                let waited_for = user_task
                    .since()
                    .map(|since| waited(since, now))
                    .unwrap_or_else(|| "unknown".into());
                let mut children = Vec::with_capacity(users.len());
                for user in &users {
                    let profile = self
                        .intake
                        .camunda
                        .user_profile(user)
                        .await
                        .map_err(|e| engine_down(topic, e))?;
                    let resolution = engine_user(user, profile.as_ref(), locale.as_deref());
                    let payload = notice_payload(
                        match &resolution {
                            Resolution::Resolved {
                                display_name: Some(name),
                                ..
                            } => name,
                            _ => user,
                        },
                        user_task.name.as_deref().unwrap_or(&key),
                        &business_key,
                        &waited_for,
                        &assignee_name,
                        ordinal,
                    );
                    let mut child_values = values.clone();
                    child_values.insert("recipientRef", user_ref(user));
                    let idempotency_key = derive_key(&self.topic.idempotency_key, &child_values)
                        .map_err(key_error)?;
                    children.extend(
                        self.children(
                            locale.as_deref(),
                            &tenant_id,
                            &business_key,
                            resolution,
                            idempotency_key,
                            payload,
                            &origin,
                            &user_task.id,
                        )
                        .await
                        .map_err(task_failure)?,
                    );
                }
                let parent_ref = match self.kind {
                    NoticeKind::Reminder => format!("task:{}", user_task.id),
                    NoticeKind::Escalation => format!("escalation-of:{}", user_task.id),
                };
                (
                    children,
                    Admission::Fail {
                        code: "NO_RECIPIENT".into(),
                        message: format!("nobody to notify about task '{key}' (no assignee, candidates or group members)"),
                    },
                    parent_ref,
                    Some(user_task.id.clone()),
                )
            }
        };
        let parent_key_pattern = self
            .topic
            .parent_key
            .as_deref()
            .unwrap_or(&self.topic.idempotency_key);
        let mut parent_recipient = Admitted::unreachable(ResolvedRecipient {
            recipient_type: RecipientType::Group,
            recipient_ref: parent_ref,
            channel: Channel::Email,
            address: None,
            locale: locale.clone(),
            timezone: None,
            quiet_hours: None,
            market: None,
        });
        parent_recipient.admission = parent_admission;
        let mut provenance = Provenance::new(
            format!("camunda:{}", self.intake.requested_by),
            Provenance::fresh_correlation_id(),
            &self.purpose.rule_ref,
        )
        .from_process(origin);
        provenance.about_task_id = about_task.clone();
        let parent = NewCommunication::new(
            &tenant_id,
            derive_key(parent_key_pattern, &values).map_err(key_error)?,
            self.purpose.class,
            Subject::new("USER_TASK", about_task.unwrap_or_else(|| key.clone())),
            parent_recipient,
            Rendering {
                template_family: template.meta.family.clone(),
                template_version: template.meta.version.clone(),
                payload: serde_json::Value::Null,
            },
            provenance,
        )
        .priority(self.purpose.priority);
        let outcome = self
            .intake
            .record_fanout(topic, &parent, &children)
            .await
            .map_err(task_failure)?;
        Ok(outcome.communication_id.to_string())
    }

    /// One record per channel the recipient is reached on (one, unless the topic's
    /// channel_mode is `all`), each admitted, rendered once and held back as the topic says.
    #[allow(clippy::too_many_arguments)]
    async fn children(
        &self,
        locale: Option<&str>,
        tenant_id: &str,
        business_key: &str,
        resolution: Resolution,
        idempotency_key: String,
        payload: serde_json::Value,
        origin: &ProcessOrigin,
        user_task_id: &str,
    ) -> Result<Vec<NewCommunication>, IntakeError> {
        let admitted = self
            .intake
            .admit(&self.purpose, tenant_id, &resolution, None)
            .await?;
        let mut children = Vec::with_capacity(admitted.len());
        for mut admitted in admitted {
            let channel = admitted.recipient.channel;
            let template = self.intake.template(&self.purpose, channel, locale, None)?;
            if matches!(admitted.admission, Admission::Queue) {
                self.intake.check_render(
                    &self.purpose,
                    template,
                    &payload,
                    &origins_of(NOTICE_PAYLOAD, &self.topic.topic),
                    admitted.recipient.recipient_type,
                )?;
            }
            let key = self.purpose.key_on(&idempotency_key, channel);
            self.intake
                .hold_back(&self.purpose, &mut admitted, tenant_id, user_task_id, &key)
                .await?;
            let provenance = Provenance::new(
                format!("camunda:{}", self.intake.requested_by),
                Provenance::fresh_correlation_id(),
                &self.purpose.rule_ref,
            )
            .from_process(ProcessOrigin {
                waits_for_outcome: false,
                business_key: Some(business_key.to_string()),
                ..origin.clone()
            })
            .about_task(user_task_id);
            children.push(
                NewCommunication::new(
                    tenant_id,
                    key,
                    self.purpose.class,
                    Subject::new("USER_TASK", user_task_id),
                    admitted,
                    Rendering {
                        template_family: template.meta.family.clone(),
                        template_version: template.meta.version.clone(),
                        payload: payload.clone(),
                    },
                    provenance,
                )
                .priority(self.purpose.priority),
            );
        }
        Ok(children)
    }
}

impl TaskHandler for TaskNotice {
    fn handle<'a>(&'a self, task: &'a LockedTask) -> BoxFuture<'a, HandlerOutcome> {
        Box::pin(async move { completed_with_communication(self.run(task).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_payload_is_the_one_built() {
        let payload = notice_payload("Mary", "Approve quote", "Q-1", "2 hours", "Bob", 1);
        crate::templates::fields::assert_declared(NOTICE_PAYLOAD, &payload, &payload);
    }
    use chrono::TimeZone;

    fn task(variables: serde_json::Value, properties: serde_json::Value) -> LockedTask {
        serde_json::from_value(json!({
            "id": "t-1",
            "topicName": "escalation",
            "processInstanceId": "p-1",
            "variables": variables,
            "extensionProperties": properties
        }))
        .unwrap()
    }

    #[test]
    fn a_setting_is_a_variable_else_the_extension_property_and_null_is_absent() {
        let properties = json!({"escalationGroup": "sales-managers", "escalationUser": ""});
        let absent = json!({"type": "Null", "value": null});
        for declared in ESCALATION_INPUTS.iter().chain(REMINDER_INPUTS) {
            let name = declared.name;
            let read = |variables| task_setting(&task(variables, properties.clone()), name);
            let fallback = properties[name].as_str().filter(|v| !v.is_empty());
            assert_eq!(read(json!({})).unwrap().as_deref(), fallback, "{name}");
            let null = json!({ name: absent.clone() });
            assert_eq!(read(null).unwrap().as_deref(), fallback, "{name}");
            let set = json!({ name: {"type": "String", "value": "x"} });
            assert_eq!(read(set).unwrap().as_deref(), Some("x"), "{name}");
            let wrong = json!({ name: {"type": "Integer", "value": 1} });
            assert!(read(wrong).is_err(), "{name}");
        }
    }

    #[test]
    fn waiting_time_reads_like_a_person_wrote_it() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 26, 8, 0, 0).unwrap();
        assert_eq!(waited(t0, t0 + chrono::Duration::minutes(40)), "40 min");
        assert_eq!(waited(t0, t0 + chrono::Duration::minutes(125)), "2 h 5 min");
        assert_eq!(waited(t0, t0 + chrono::Duration::hours(76)), "3 d 4 h");
        assert_eq!(waited(t0, t0 - chrono::Duration::minutes(5)), "0 min");
    }
}
