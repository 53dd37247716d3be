//! A real webhook receiver on loopback (`webhook_receiver.py`): verifies each request with the
//! independent `standardwebhooks` package from PyPI and answers as scripted.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

/// One request as the receiver saw it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Received {
    pub webhook_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    pub correlation_id: Option<String>,
    pub verified: bool,
    pub error: Option<String>,
    pub status: u16,
    pub step: String,
    pub body: String,
    pub path: String,
    /// When the receiver got the request (Unix milliseconds).
    pub received_at_ms: i64,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("the webhook body is JSON")
    }
}

pub struct WebhookReceiver {
    child: Child,
    pub port: u16,
    log: PathBuf,
    script_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// The Python with `standardwebhooks` (scripts/test installs it in `.stack/venv`).
fn python() -> PathBuf {
    let path = std::env::var("HERALD_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".stack/venv/bin/python")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it installs the standardwebhooks package from PyPI in .stack/venv)",
        path.display()
    );
    path
}

impl WebhookReceiver {
    /// Starts a receiver that verifies with `secrets` and answers per `script` (e.g.
    /// `500,500,200`, `400`, `sleep3000,200`; the last entry repeats).
    pub fn start(secrets: &[&str], script: &str) -> WebhookReceiver {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("received.jsonl");
        let script_file = dir.path().join("script");
        std::fs::write(&script_file, script).expect("script file");
        let mut command = Command::new(python());
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/support/webhook_receiver.py"
            ))
            .arg("--log")
            .arg(&log)
            .arg("--script-file")
            .arg(&script_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for secret in secrets {
            command.arg("--secret").arg(secret);
        }
        let mut child = command.spawn().expect("start the webhook receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the receiver prints its port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the webhook receiver did not start: '{line}'"));
        WebhookReceiver {
            child,
            port,
            log,
            script_file,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Changes how the receiver answers from now on (entries are indexed by the number of
    /// requests received so far; the last one repeats).
    pub fn set_script(&self, script: &str) {
        std::fs::write(&self.script_file, script).expect("script file");
    }

    pub fn received(&self) -> Vec<Received> {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a log line of the receiver"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
