//! Test support: the real stack started by `scripts/stack up` (PostgreSQL, the Camunda engine),
//! a fresh database per test, an SMTP sink per test, and herald itself as a child process.
//!
//! Tests never skip: without the stack they fail and say how to start it.

#![allow(dead_code)]

pub mod smtp_sink;
pub mod stall_proxy;
pub mod webhook_receiver;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald::camunda::{CamundaClient, TypedValue, Variables};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Connection;

pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The herald binary: `HERALD_BIN` (the benchmark's release build), else Cargo's for
/// integration tests, else the debug build (the fault suite, an example, runs it too).
pub fn herald_bin() -> PathBuf {
    if let Ok(path) = std::env::var("HERALD_BIN") {
        return PathBuf::from(path);
    }
    match option_env!("CARGO_BIN_EXE_herald") {
        Some(path) => PathBuf::from(path),
        None => Path::new(MANIFEST_DIR).join("target/debug/herald"),
    }
}

/// The portal link secret herald gets in the tests.
pub const TEST_LINK_SECRET: &str = "test-link-secret";
/// The keyring of a test's herald (HERALD_KEYS__ENCRYPTION): one key, `t1`.
pub const TEST_ENCRYPTION_KEYS: &str =
    "t1:7465737420656e6372797074696f6e206b6579206f6620686572616c64212121";
/// The recipient-reference key of a test's herald (HERALD_KEYS__RECIPIENT_REF).
pub const TEST_RECIPIENT_REF_KEY: &str =
    "7465737420726563697069656e74207265666572656e6365206b657921212121";

/// The keys of a test's herald, as the settings make them.
pub fn test_keys() -> herald::keyring::Keys {
    herald::keyring::Keys {
        ring: herald::keyring::Keyring::from_settings(Some(TEST_ENCRYPTION_KEYS), None).unwrap(),
        recipient_ref: herald::keyring::RefKey::from_setting(Some(TEST_RECIPIENT_REF_KEY)).unwrap(),
    }
}

/// Artifact settings as herald gets them in the tests (for handlers run in the test process).
pub fn test_artifact_settings() -> herald::config::ArtifactSettings {
    herald::config::ArtifactSettings {
        portal_base_url: "https://portal.herald.local/documents".into(),
        link_ttl: std::time::Duration::from_secs(3600),
        max_attachment_bytes: 1024 * 1024,
        wait_retry: std::time::Duration::from_millis(500),
        link_secret: Some(TEST_LINK_SECRET.into()),
    }
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: these tests run against the real stack; start it with `scripts/stack up` and `source .stack/env`, or run `scripts/test`")
    })
}

/// The engine's REST client (HERALD_CAMUNDA_URL).
pub fn camunda() -> CamundaClient {
    CamundaClient::new(&required_env("HERALD_CAMUNDA_URL")).expect("camunda client")
}

pub fn camunda_url() -> String {
    required_env("HERALD_CAMUNDA_URL")
}

/// A fresh, migrated database for one test on the stack's PostgreSQL.
pub struct TestDb {
    pub url: String,
    pub name: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url = required_env("HERALD_DATABASE_URL");
        let name = format!("herald_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at HERALD_DATABASE_URL: {e}"));
        sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = replace_db_name(&admin_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .expect("connect to test database");
        herald::ledger::MIGRATOR
            .run(&pool)
            .await
            .expect("migrations");
        TestDb { url, name, pool }
    }

    /// Adds a contact to herald's directory.
    pub async fn add_contact(&self, tenant: &str, contact_id: &str, name: &str, email: &str) {
        sqlx::query("INSERT INTO contact (tenant_id, contact_id, display_name, email, locale) VALUES ($1, $2, $3, $4, 'en')")
            .bind(tenant)
            .bind(contact_id)
            .bind(name)
            .bind(email)
            .execute(&self.pool)
            .await
            .expect("insert contact");
    }

    /// Registers the proposal document `doc-<quote_id>` of revision 4 (a real file) as
    /// AVAILABLE; returns the file's path.
    pub async fn add_proposal_document(&self, tenant: &str, quote_id: &str) -> PathBuf {
        let dir = Path::new(MANIFEST_DIR)
            .join("target")
            .join("test-artifacts");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let path = dir.join(format!("{}-{quote_id}.pdf", self.name));
        let bytes = format!("%PDF-1.4\n% proposal {quote_id} revision 4\n%%EOF\n").into_bytes();
        std::fs::write(&path, &bytes).expect("write artifact");
        herald::artifacts::Registry::new(self.pool.clone())
            .register(&herald::artifacts::Artifact {
                tenant_id: tenant.into(),
                artifact_id: format!("doc-{quote_id}"),
                subject_type: "QUOTE_REVISION".into(),
                subject_id: format!("{quote_id}/4"),
                artifact_type: "PROPOSAL_DOCUMENT".into(),
                status: "AVAILABLE".into(),
                content_hash: None,
                storage_location: format!("file://{}", path.display()),
                size_bytes: Some(bytes.len() as i64),
                media_type: "application/pdf".into(),
                file_name: format!("proposal-{quote_id}-r4.pdf"),
            })
            .await
            .expect("register artifact");
        path
    }

    /// Refuses (or allows again) every new connection to this database, and cuts the open ones:
    /// the database is unreachable for herald, for real.
    pub async fn set_reachable(&self, reachable: bool) {
        let admin_url = required_env("HERALD_DATABASE_URL");
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("admin connection");
        sqlx::query(&format!(
            r#"ALTER DATABASE "{}" WITH ALLOW_CONNECTIONS {}"#,
            self.name, reachable
        ))
        .execute(&mut admin)
        .await
        .expect("alter database");
        if !reachable {
            self.pool.close().await;
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
                .bind(&self.name)
                .execute(&mut admin)
                .await
                .expect("terminate backends");
        }
    }

    /// A new pool (after `set_reachable(true)`).
    pub async fn reconnect(&mut self) {
        self.pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .expect("reconnect");
    }

    /// The status and failure code of the one record `condition` (an SQL condition) selects.
    pub async fn outcome_where(&self, condition: &str) -> (String, Option<String>) {
        sqlx::query_as(&format!(
            "SELECT status, failure_code FROM communication_record WHERE {condition}"
        ))
        .fetch_one(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("the record where {condition}: {e}"))
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("HERALD_DATABASE_URL is a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

/// The environment of a test's herald: the test database, SMTP server and lane, short polls and
/// long polls, the portal link secret, the test keys, the API on port 0, plain-http webhooks to
/// loopback.
pub fn test_env(db: &TestDb, smtp_url: &str, lane: &str) -> Vec<(String, String)> {
    [
        ("HERALD_DATABASE_URL", db.url.as_str()),
        ("HERALD_SMTP_URL", smtp_url),
        ("HERALD_CAMUNDA_URL", &camunda_url()),
        ("HERALD_CAMUNDA__LANE", lane),
        ("HERALD_CAMUNDA__LONG_POLL_MS", LONG_POLL_MS),
        ("HERALD_DATABASE__MAX_CONNECTIONS", "5"),
        ("HERALD_RELAY__POLL_INTERVAL_MS", "1000"),
        ("HERALD_DELIVERY__POLL_INTERVAL_MS", "1000"),
        ("HERALD_ARTIFACTS__LINK_SECRET", TEST_LINK_SECRET),
        ("HERALD_KEYS__ENCRYPTION", TEST_ENCRYPTION_KEYS),
        ("HERALD_KEYS__RECIPIENT_REF", TEST_RECIPIENT_REF_KEY),
        ("HERALD_ARTIFACTS__WAIT_RETRY_MS", "500"),
        ("HERALD_API__LISTEN", "127.0.0.1:0"),
        ("HERALD_LOG__FILTER", "info,herald=debug"),
        // Webhook receivers of the tests listen on loopback over plain http.
        ("HERALD_WEBHOOKS__ALLOW_HTTP", "true"),
        ("HERALD_WEBHOOKS__ALLOWED_HOSTS", "127.0.0.1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The typed settings of a test's herald: [`test_env`] with `extra` on top, read the way
/// `herald run` reads its environment, with the repository's topics, templates, rules and
/// models.
pub fn test_settings(
    db: &TestDb,
    smtp_url: &str,
    lane: &str,
    extra: &[(&str, &str)],
) -> herald::config::Settings {
    let mut env = test_env(db, smtp_url, lane);
    let root = Path::new(MANIFEST_DIR);
    for (key, dir) in [
        ("HERALD_PATHS__TOPICS", "topics"),
        ("HERALD_PATHS__TEMPLATES", "templates"),
        ("HERALD_PATHS__BPMN", "bpmn"),
        ("HERALD_PATHS__RULES", "rules/events.toml"),
    ] {
        env.push((key.into(), root.join(dir).display().to_string()));
    }
    // Heralds of one test process are told apart by their worker id (the pid is the same).
    env.push((
        "HERALD_CAMUNDA__WORKER_ID".into(),
        format!("herald-test-{lane}"),
    ));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    herald::config::Settings::load_from(None, env).expect("the test's settings")
}

/// herald's runtime inside the test process, stopped when dropped (or by [`InProcess::stop`]).
pub struct InProcess {
    shutdown: tokio_util::sync::CancellationToken,
    running: Option<tokio::task::JoinHandle<()>>,
    /// Where its API listens (a port of its own, when the settings asked for port 0).
    pub api_address: Option<std::net::SocketAddr>,
    log: LogBuffer,
}

/// What one in-process herald logged: its components carry their own subscriber, so that
/// tests running side by side keep their logs apart.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

/// Starts herald's runtime (`herald run`'s wiring: migrations, workers, delivery, relays, API)
/// in the test process, with typed settings.
pub async fn spawn_herald(
    settings: herald::config::Settings,
    components: herald::runtime::Components,
) -> InProcess {
    use tracing::instrument::WithSubscriber;
    let log = LogBuffer::default();
    let logger = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(&settings.log.filter))
            .with_ansi(false)
            .with_writer(log.clone())
            .finish(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = herald::runtime::start(settings, components, shutdown.clone())
        .with_subscriber(logger.clone())
        .await
        .expect("herald starts")
        .expect("herald starts before it is stopped");
    let api_address = running.api_address;
    InProcess {
        shutdown,
        running: Some(tokio::spawn(running.wait().with_subscriber(logger))),
        api_address,
        log,
    }
}

impl InProcess {
    /// What it logged so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log.0.lock().unwrap()).into_owned()
    }

    /// Stops it as SIGTERM would, and waits until every component stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.await.expect("herald's components stop");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// herald in the test process, every component, on `db`, `smtp_url` and `lane`, with `extra`
/// settings (environment names) on top.
pub async fn start_herald(
    db: &TestDb,
    smtp_url: &str,
    lane: &str,
    extra: &[(&str, &str)],
) -> InProcess {
    spawn_herald(
        test_settings(db, smtp_url, lane, extra),
        herald::runtime::Components::all(),
    )
    .await
}

/// herald running as a child process (`herald run`), killed when dropped: for what only a
/// process shows (SIGKILL, SIGTERM, its log).
pub struct Herald {
    child: Option<Child>,
    pub log: PathBuf,
}

/// The long polling (`camunda.long_poll_ms`) of every herald the tests and the bench start.
pub const LONG_POLL_MS: &str = "5000";

/// A unique lane: herald fetches only the tasks of processes started with this `heraldLane`.
pub fn new_lane() -> String {
    format!("lane-{}", uuid::Uuid::new_v4().simple())
}

impl Herald {
    /// Starts `herald run` on `db` and `smtp_url`, fetching only `lane`; `extra` env overrides.
    pub fn start(db: &TestDb, smtp_url: &str, lane: &str, extra: &[(&str, &str)]) -> Herald {
        Self::start_with(db, smtp_url, lane, &["run"], extra)
    }

    /// `herald <args>` (e.g. `run --only delivery`) with the test environment.
    pub fn start_with(
        db: &TestDb,
        smtp_url: &str,
        lane: &str,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Herald {
        let logs = Path::new(MANIFEST_DIR).join("target").join("test-logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log = logs.join(format!("{lane}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(herald_bin());
        command
            .args(args)
            .current_dir(MANIFEST_DIR)
            .envs(test_env(db, smtp_url, lane))
            .stdout(Stdio::null())
            .stderr(file);
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn herald");
        Herald {
            child: Some(child),
            log,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: the process dies where it stands (mid-batch, mid-SMTP session).
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    /// SIGTERM, then wait for the exit status (graceful shutdown).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "herald did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a proposal test works with: the engine (models deployed), a fresh database holding the
/// proposal document of the quote, an SMTP sink, and herald in the test process on a lane of
/// its own.
pub struct ProposalScene {
    pub camunda: CamundaClient,
    pub db: TestDb,
    pub sink: smtp_sink::SmtpSink,
    pub lane: String,
    pub herald: InProcess,
}

impl ProposalScene {
    pub async fn start(quote_id: &str, extra: &[(&str, &str)]) -> ProposalScene {
        let camunda = camunda();
        deploy(&camunda).await;
        let db = TestDb::create().await;
        db.add_proposal_document("acme", quote_id).await;
        let sink = smtp_sink::SmtpSink::start().await.expect("an SMTP sink");
        let lane = new_lane();
        let herald = start_herald(&db, &sink.url(), &lane, extra).await;
        ProposalScene {
            camunda,
            db,
            sink,
            lane,
            herald,
        }
    }
}

/// The communication a process's task was completed with (its `communicationId`), as the
/// ledger records it.
pub async fn completed_communication(
    camunda: &CamundaClient,
    db: &TestDb,
    process_instance_id: &str,
) -> herald::ledger::CommunicationView {
    let id: herald::ledger::CommunicationId = history_variables(camunda, process_instance_id).await
        ["communicationId"]
        .as_str()
        .expect("the task was completed with communicationId")
        .parse()
        .expect("a communication id");
    herald::ledger::Ledger::new(db.pool.clone(), Duration::from_secs(60))
        .get("acme", id)
        .await
        .expect("the ledger answers")
        .expect("the communication is recorded")
}

/// Deploys bpmn/ (unchanged files are skipped by the engine).
pub async fn deploy(camunda: &CamundaClient) {
    camunda
        .deploy_dir("herald-tests", &Path::new(MANIFEST_DIR).join("bpmn"))
        .await
        .expect("deploy bpmn/");
}

pub fn string_var(value: &str) -> TypedValue {
    TypedValue::string(value)
}

/// Proposal inputs for the quote-proposal process.
pub fn proposal_vars(lane: &str, quote_id: &str, recipient: (&str, &str)) -> Variables {
    let mut v = Variables::new();
    v.insert("heraldLane".into(), TypedValue::string(lane));
    v.insert("quoteId".into(), TypedValue::string(quote_id));
    v.insert("revisionNo".into(), TypedValue::integer(4));
    v.insert(
        "artifactId".into(),
        TypedValue::string(format!("doc-{quote_id}")),
    );
    v.insert("tenantId".into(), TypedValue::string("acme"));
    v.insert(recipient.0.into(), TypedValue::string(recipient.1));
    v
}

/// Polls `check` every 100 ms until it returns Some, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The history of a process instance.
pub async fn history(camunda: &CamundaClient, process_instance_id: &str) -> Value {
    camunda
        .get_json(&format!("/history/process-instance/{process_instance_id}"))
        .await
        .expect("history")
}

pub async fn wait_until_completed(
    camunda: &CamundaClient,
    process_instance_id: &str,
    timeout: Duration,
) {
    wait_for("the process instance to complete", timeout, || async {
        let h = history(camunda, process_instance_id).await;
        (h["state"] == "COMPLETED").then_some(())
    })
    .await
}

/// The variables of a (possibly ended) process instance, by name.
pub async fn history_variables(
    camunda: &CamundaClient,
    process_instance_id: &str,
) -> serde_json::Map<String, Value> {
    let list = camunda
        .get_json(&format!(
            "/history/variable-instance?processInstanceId={process_instance_id}"
        ))
        .await
        .expect("variables");
    list.as_array()
        .expect("list")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("").to_string(),
                v["value"].clone(),
            )
        })
        .collect()
}

async fn engine_call(method: reqwest::Method, path: &str, body: Option<Value>) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", camunda_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("engine reachable");
    let status = response.status();
    assert!(
        status.is_success(),
        "{path}: {status} {}",
        response.text().await.unwrap_or_default()
    );
}

/// Creates an engine user with a profile email (unique ids per test).
pub async fn create_user(id: &str, first: &str, last: &str, email: Option<&str>) {
    engine_call(
        reqwest::Method::POST,
        "/user/create",
        Some(serde_json::json!({
            "profile": {"id": id, "firstName": first, "lastName": last, "email": email},
            "credentials": {"password": "not-used-1"}
        })),
    )
    .await
}

pub async fn create_group(id: &str, members: &[&str]) {
    engine_call(
        reqwest::Method::POST,
        "/group/create",
        Some(serde_json::json!({"id": id, "name": id, "type": "WORKFLOW"})),
    )
    .await;
    add_members(id, members).await;
}

async fn add_members(group: &str, members: &[&str]) {
    for member in members {
        engine_call(
            reqwest::Method::PUT,
            &format!("/group/{group}/members/{member}"),
            None,
        )
        .await;
    }
}

/// Completes a user task.
pub async fn complete_user_task(task_id: &str) {
    engine_call(
        reqwest::Method::POST,
        &format!("/task/{task_id}/complete"),
        Some(serde_json::json!({})),
    )
    .await
}

/// The first active user task of a process instance with this key, once there is one.
pub async fn wait_for_user_task(
    camunda: &CamundaClient,
    process_instance_id: &str,
    key: &str,
) -> Value {
    wait_for_first(
        camunda,
        &format!("user task {key}"),
        &format!("/task?processInstanceId={process_instance_id}&taskDefinitionKey={key}"),
    )
    .await
}

/// The first element of the list a GET on the engine answers, once there is one.
pub async fn wait_for_first(camunda: &CamundaClient, what: &str, path: &str) -> Value {
    wait_for_first_within(camunda, what, path, Duration::from_secs(60)).await
}

/// [`wait_for_first`], for at most `timeout`.
pub async fn wait_for_first_within(
    camunda: &CamundaClient,
    what: &str,
    path: &str,
    timeout: Duration,
) -> Value {
    wait_for(what, timeout, || {
        let camunda = camunda.clone();
        let path = path.to_string();
        async move {
            camunda
                .get_json(&path)
                .await
                .unwrap()
                .as_array()
                .and_then(|a| a.first().cloned())
        }
    })
    .await
}

/// Creates a group if it does not exist yet, and adds members.
pub async fn ensure_group(id: &str, members: &[&str]) {
    let exists = reqwest::get(format!("{}/group/{id}", camunda_url()))
        .await
        .expect("engine reachable")
        .status()
        .is_success();
    if exists {
        add_members(id, members).await;
    } else {
        create_group(id, members).await;
    }
}

/// Makes `group` a group of `tenant` in the engine's identity service (the tenant made when
/// missing): what lets a tenant's caller escalate to it.
pub async fn tenant_group(tenant: &str, group: &str) {
    let exists = reqwest::get(format!("{}/tenant/{tenant}", camunda_url()))
        .await
        .expect("engine reachable")
        .status()
        .is_success();
    if !exists {
        engine_call(
            reqwest::Method::POST,
            "/tenant/create",
            Some(serde_json::json!({"id": tenant, "name": tenant})),
        )
        .await;
    }
    engine_call(
        reqwest::Method::PUT,
        &format!("/tenant/{tenant}/group-members/{group}"),
        None,
    )
    .await;
}

/// A topic file as shipped in topics/.
pub fn shipped_topic(name: &str) -> herald::workers::TopicConfig {
    herald::workers::load_topics(&Path::new(MANIFEST_DIR).join("topics"))
        .expect("topics/")
        .into_iter()
        .find(|t| t.topic == name)
        .unwrap_or_else(|| panic!("no topic file for {name}"))
}

/// Plays a worker that is about to die: locks one task of `topic` in `lane` for 2 s.
pub async fn lock_as_doomed_worker(
    camunda: &CamundaClient,
    topic: &herald::workers::TopicConfig,
    lane: &str,
) -> herald::camunda::LockedTask {
    let mut filter = std::collections::BTreeMap::new();
    filter.insert("heraldLane".to_string(), Value::String(lane.to_string()));
    wait_for(
        &format!("a {} task", topic.topic),
        Duration::from_secs(30),
        || {
            let request = herald::camunda::FetchAndLock {
                worker_id: "doomed-worker".into(),
                max_tasks: 1,
                use_priority: true,
                sorting: Vec::new(),
                async_response_timeout: Some(1000),
                topics: vec![herald::camunda::TopicRequest {
                    topic_name: topic.topic.clone(),
                    lock_duration: 2000,
                    variables: Some(topic.variables.clone()),
                    process_variables: filter.clone(),
                    include_extension_properties: topic.include_extension_properties,
                }],
            };
            let camunda = camunda.clone();
            async move {
                camunda
                    .fetch_and_lock(&request)
                    .await
                    .unwrap()
                    .into_iter()
                    .next()
            }
        },
    )
    .await
}

/// The intake as herald's handlers use it, for running one in the test process.
pub fn intake(db: &TestDb, camunda: &CamundaClient) -> herald::intake::Intake {
    herald::intake::Intake::on(
        db.pool.clone(),
        Duration::from_secs(60),
        camunda.clone(),
        std::sync::Arc::new(
            herald::templates::TemplateRegistry::load(&Path::new(MANIFEST_DIR).join("templates"))
                .expect("templates/"),
        ),
        test_artifact_settings(),
        "doomed-worker".into(),
    )
    .with_keys(test_keys())
}

/// Starts a quote-proposal process in `lane` with the business key `<quote>-<lane>`.
pub async fn start_proposal(
    camunda: &CamundaClient,
    lane: &str,
    quote_id: &str,
    recipient: (&str, &str),
) -> herald::camunda::client::ProcessInstance {
    camunda
        .start_process(
            "quote-proposal",
            &format!("{quote_id}-{}", &lane[5..13]),
            &proposal_vars(lane, quote_id, recipient),
        )
        .await
        .expect("start quote-proposal")
}

/// A herald process with its API listening, an HTTP client for it, and an API key of tenant
/// `acme` with every scope, which the calls below send.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub key: String,
    pub db: PgPool,
}

/// The tenant of `Api`'s key.
pub const API_TENANT: &str = "acme";

/// Makes an API key straight in the database (as `herald api-keys create` does).
pub async fn api_key(
    pool: &PgPool,
    tenant: Option<&str>,
    scopes: &[herald::api::keys::Scope],
) -> String {
    use secrecy::ExposeSecret;
    let (_, key) = herald::api::keys::ApiKeys::new(pool.clone())
        .create(
            "test",
            herald::api::keys::NewKey {
                tenant: tenant.map(str::to_string),
                scopes: scopes.to_vec(),
                name: "tests".into(),
                expires_in: None,
            },
        )
        .await
        .expect("make an API key");
    key.expose_secret().to_string()
}

impl Api {
    /// herald in the test process with its API on a port of its own, once it answers.
    pub async fn start(db: &TestDb, smtp_url: &str, extra: &[(&str, &str)]) -> (InProcess, Api) {
        let key = api_key(&db.pool, Some(API_TENANT), &herald::api::keys::Scope::ALL).await;
        let settings = test_settings(db, smtp_url, &new_lane(), extra);
        let herald = spawn_herald(settings, herald::runtime::Components::all()).await;
        let address = herald.api_address.expect("the API listens");
        let api = Api {
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            key,
            db: db.pool.clone(),
        };
        wait_for("the API to answer", Duration::from_secs(30), || {
            let request = api.http.get(format!("{}/health", api.base)).send();
            async move {
                request
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        (herald, api)
    }

    /// The same API with a key of another tenant (every scope).
    pub async fn as_tenant(&self, tenant: &str) -> Api {
        let key = api_key(&self.db, Some(tenant), &herald::api::keys::Scope::ALL).await;
        Api {
            key,
            ..self.clone()
        }
    }

    /// The same API with a platform key of these scopes.
    pub async fn as_platform(&self, scopes: &[herald::api::keys::Scope]) -> Api {
        let key = api_key(&self.db, None, scopes).await;
        Api {
            key,
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with `Api`'s key (and a fresh Idempotency-Key on a POST).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let post = method == reqwest::Method::POST;
        let builder = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.key);
        if post {
            builder.header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        } else {
            builder
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self.request(method, path).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A copy of the shipped `topics/` with `edit` applied to the text of `file`: for tests of
/// topic settings (`HERALD_PATHS__TOPICS`).
pub fn topics_with(file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(Path::new(MANIFEST_DIR).join("topics")).expect("topics/") {
        let path = entry.expect("topic file").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("topic file");
        let text = if name == file { edit(text) } else { text };
        std::fs::write(dir.path().join(&name), text).expect("write topic");
    }
    dir
}

/// An order confirmation to `<key>@customer.example`, ready to queue (Ledger::request).
pub fn order_confirmation(key: &str) -> herald::ledger::NewCommunication {
    use herald::ledger::*;
    NewCommunication::new(
        "acme",
        format!("test:{key}"),
        Classification {
            communication_type: CommunicationType::OrderConfirmation,
            category: MessageCategory::Transactional,
        },
        Subject::new("ORDER", key).of(None, Some(key.into())),
        Admitted::unreachable(ResolvedRecipient {
            recipient_type: RecipientType::Contact,
            recipient_ref: format!("contact-{key}"),
            channel: Channel::Email,
            address: Some(format!("{key}@customer.example")),
            locale: None,
            timezone: None,
            quiet_hours: None,
            market: None,
        }),
        Rendering {
            template_family: "order-confirmation-email".into(),
            template_version: "2026.11.0".into(),
            payload: serde_json::json!({"orderNumber": key, "recipientName": "R"}),
        },
        Provenance::new("test", key, "test:v1"),
    )
}

/// Queues `n` communications made by `make` (keys `<prefix>-<i>`), `writers` at a time, as the
/// API or a worker would.
pub async fn queue_many(
    db: &TestDb,
    prefix: &str,
    n: usize,
    writers: usize,
    make: fn(&str) -> herald::ledger::NewCommunication,
) {
    let ledger = herald::ledger::Ledger::new(db.pool.clone(), Duration::from_secs(60));
    let mut running = tokio::task::JoinSet::new();
    for w in 0..writers {
        let ledger = ledger.clone();
        let prefix = prefix.to_string();
        running.spawn(async move {
            for i in (w..n).step_by(writers) {
                ledger
                    .request(&make(&format!("{prefix}-{i}")))
                    .await
                    .expect("queue a communication");
            }
        });
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }
}

/// A sender of a fleet: `herald run --only delivery,relay` with this worker id.
pub fn sender(db: &TestDb, smtp_url: &str, name: &str, extra: &[(&str, &str)]) -> Herald {
    let mut env = vec![("HERALD_CAMUNDA__WORKER_ID", name)];
    env.extend_from_slice(extra);
    Herald::start_with(
        db,
        smtp_url,
        &new_lane(),
        &["run", "--only", "delivery,relay"],
        &env,
    )
}

/// Deploys the test models of tests/it/fixtures/bpmn (unchanged files are skipped).
pub async fn deploy_fixtures(camunda: &CamundaClient) {
    camunda
        .deploy_dir(
            "herald-test-fixtures",
            &Path::new(MANIFEST_DIR).join("tests/it/fixtures/bpmn"),
        )
        .await
        .expect("deploy fixtures");
}

/// herald's worker loop (`camunda::worker::run`) in the test process, with test handlers.
pub struct InProcessWorker {
    shutdown: tokio_util::sync::CancellationToken,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl InProcessWorker {
    /// Runs `subscriptions` as `worker_id` on the tasks of `lane`, counting fetches in `db`,
    /// with at most `max_in_flight` tasks at once and `max_tasks` a fetch.
    pub fn start(
        db: &TestDb,
        worker_id: &str,
        lane: &str,
        subscriptions: Vec<herald::camunda::worker::Subscription>,
        max_in_flight: usize,
        max_tasks: u32,
    ) -> InProcessWorker {
        let options = herald::camunda::worker::WorkerOptions {
            worker_id: worker_id.into(),
            max_tasks,
            max_in_flight,
            long_poll: Duration::from_millis(LONG_POLL_MS.parse().unwrap()),
            long_poll_margin: herald::camunda::fetch::DEFAULT_LONG_POLL_MARGIN,
            process_variables: [("heraldLane".to_string(), Value::String(lane.into()))].into(),
            shutdown_grace: Duration::from_secs(1),
            fetch_counter: std::sync::Arc::new(herald::workers::fetch_counts::FetchCounts::new(
                db.pool.clone(),
                worker_id,
            )),
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(herald::camunda::worker::run(
            camunda(),
            options,
            subscriptions,
            shutdown.clone(),
        ));
        InProcessWorker {
            shutdown,
            running: Some(running),
        }
    }

    /// Stops fetching; waits for the loop to finish (or unlock) what it holds.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.await.expect("the worker loop");
        }
    }
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The external task of an incident (`configuration`), with the error details herald reported
/// (`errorDetails` answers text/plain).
pub async fn incident_task(camunda: &CamundaClient, incident: &Value) -> (Value, String) {
    let task_id = incident["configuration"]
        .as_str()
        .expect("the incident's task");
    let task = camunda
        .get_json(&format!("/external-task/{task_id}"))
        .await
        .expect("the task");
    let details = reqwest::get(format!(
        "{}/external-task/{task_id}/errorDetails",
        camunda_url()
    ))
    .await
    .expect("the engine answers")
    .text()
    .await
    .expect("the details");
    (task, details)
}
