//! What one fetchAndLock asks for: the request body, the order the engine hands out tasks in
//! (`usePriority`, `sorting` by `createTime`), and the grouping of a worker's topics into one
//! request per ordering.
//!
//! `usePriority` and `sorting` belong to the request, not to a topic: the engine orders the
//! tasks of all the request's topics together. Topics that ask for the same order share one
//! request (one long poll); each other order gets a request (and a fetch loop) of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How much longer than its long poll herald waits for a fetchAndLock answer before it takes
/// the connection for dead (a proxy or engine that stopped answering without closing).
pub const DEFAULT_LONG_POLL_MARGIN: Duration = Duration::from_secs(15);

/// One topic of a fetchAndLock request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRequest {
    pub topic_name: String,
    pub lock_duration: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub process_variables: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub include_extension_properties: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchAndLock {
    pub worker_id: String,
    pub max_tasks: u32,
    pub use_priority: bool,
    /// Sorting after the priority (engine 7.21 and later); absent when empty, so that older
    /// engines never see the field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sorting: Vec<Sorting>,
    /// Long polling: how long the engine may hold the request open when no task is there (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub async_response_timeout: Option<u64>,
    pub topics: Vec<TopicRequest>,
}

impl FetchAndLock {
    /// The HTTP timeout of this request: its long poll plus `margin`. A connection that stays
    /// silent longer is taken for dead.
    pub fn http_timeout(&self, margin: Duration) -> Duration {
        Duration::from_millis(self.async_response_timeout.unwrap_or(0)) + margin
    }
}

/// One entry of fetchAndLock's `sorting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sorting {
    pub sort_by: SortBy,
    pub sort_order: SortOrder,
}

/// What fetchAndLock can sort by (the engine knows only this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SortBy {
    #[serde(rename = "createTime")]
    CreateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// The order in which the engine hands out a request's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FetchOrder {
    /// Higher `camunda:taskPriority` first (the official client's default: true).
    pub use_priority: bool,
    /// Then by creation time; `None`: in whatever order the engine's query returns them.
    pub create_time: Option<SortOrder>,
}

impl Default for FetchOrder {
    fn default() -> Self {
        FetchOrder {
            use_priority: true,
            create_time: None,
        }
    }
}

impl FetchOrder {
    pub fn sorting(&self) -> Vec<Sorting> {
        self.create_time
            .map(|sort_order| Sorting {
                sort_by: SortBy::CreateTime,
                sort_order,
            })
            .into_iter()
            .collect()
    }
}

/// The topics one request fetches together, in one order.
#[derive(Debug, Clone)]
pub struct FetchGroup {
    pub order: FetchOrder,
    pub topics: Vec<TopicRequest>,
}

impl FetchGroup {
    /// Groups topics by their order, keeping their given sequence within a group; the groups
    /// come in a fixed order (by `FetchOrder`).
    pub fn by_order(topics: impl IntoIterator<Item = (FetchOrder, TopicRequest)>) -> Vec<Self> {
        let mut groups: BTreeMap<FetchOrder, Vec<TopicRequest>> = BTreeMap::new();
        for (order, topic) in topics {
            groups.entry(order).or_default().push(topic);
        }
        groups
            .into_iter()
            .map(|(order, topics)| FetchGroup { order, topics })
            .collect()
    }

    /// The fetchAndLock of this group.
    pub fn request(&self, worker_id: &str, max_tasks: u32, long_poll: Duration) -> FetchAndLock {
        FetchAndLock {
            worker_id: worker_id.to_string(),
            max_tasks,
            use_priority: self.order.use_priority,
            sorting: self.order.sorting(),
            async_response_timeout: Some(long_poll.as_millis() as u64),
            topics: self.topics.clone(),
        }
    }

    pub fn topic_names(&self) -> Vec<&str> {
        self.topics.iter().map(|t| t.topic_name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn topic(name: &str) -> TopicRequest {
        TopicRequest {
            topic_name: name.into(),
            lock_duration: 1000,
            variables: None,
            process_variables: BTreeMap::new(),
            include_extension_properties: false,
        }
    }

    #[test]
    fn topics_of_one_order_share_a_request_others_get_their_own() {
        let asc = FetchOrder {
            use_priority: true,
            create_time: Some(SortOrder::Asc),
        };
        let groups = FetchGroup::by_order([
            (FetchOrder::default(), topic("a")),
            (asc, topic("b")),
            (FetchOrder::default(), topic("c")),
        ]);
        let names: Vec<Vec<&str>> = groups.iter().map(|g| g.topic_names()).collect();
        assert_eq!(names, vec![vec!["a", "c"], vec!["b"]]);
        assert_eq!(groups[0].order, FetchOrder::default());
        assert_eq!(groups[1].order, asc);
    }

    #[test]
    fn the_request_carries_priority_and_sorting() {
        let group = FetchGroup {
            order: FetchOrder {
                use_priority: false,
                create_time: Some(SortOrder::Desc),
            },
            topics: vec![topic("a")],
        };
        let body = serde_json::to_value(group.request("w", 5, Duration::from_secs(2))).unwrap();
        assert_eq!(body["usePriority"], json!(false));
        assert_eq!(
            body["sorting"],
            json!([{"sortBy": "createTime", "sortOrder": "desc"}])
        );
        assert_eq!(body["asyncResponseTimeout"], json!(2000));
        assert_eq!(body["maxTasks"], json!(5));
    }

    #[test]
    fn without_sorting_the_field_is_left_out() {
        let group = FetchGroup {
            order: FetchOrder::default(),
            topics: vec![topic("a")],
        };
        let body = serde_json::to_value(group.request("w", 1, Duration::ZERO)).unwrap();
        assert_eq!(body["usePriority"], json!(true));
        assert!(body.get("sorting").is_none(), "{body}");
    }

    #[test]
    fn the_http_timeout_is_the_long_poll_plus_the_margin() {
        let group = FetchGroup {
            order: FetchOrder::default(),
            topics: vec![topic("a")],
        };
        let request = group.request("w", 1, Duration::from_secs(20));
        assert_eq!(
            request.http_timeout(Duration::from_secs(5)),
            Duration::from_secs(25)
        );
    }

    #[test]
    fn a_property_without_a_value_is_left_out_not_an_unreadable_fetch() {
        let task: crate::camunda::LockedTask = serde_json::from_value(serde_json::json!({
            "id": "t", "topicName": "escalation", "processInstanceId": "p",
            "extensionProperties": {"taskDefinitionKey": "approve", "escalationGroup": null}
        }))
        .unwrap();
        assert_eq!(
            task.extension_properties.into_iter().collect::<Vec<_>>(),
            vec![("taskDefinitionKey".to_string(), "approve".to_string())]
        );
        let bare: crate::camunda::LockedTask = serde_json::from_value(serde_json::json!({
            "id": "t", "topicName": "escalation", "processInstanceId": "p",
            "extensionProperties": null
        }))
        .unwrap();
        assert!(bare.extension_properties.is_empty());
    }
}
