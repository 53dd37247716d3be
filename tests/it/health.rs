//! herald's probes against a herald process (`herald run`) on a PostgreSQL of its own, which the
//! test stops and starts again: `/health/live` answers throughout, `/health/ready` is 200 with
//! every check up, 503 naming the database once PostgreSQL is gone, and 200 again once it is
//! back (the pool and the LISTEN connections reconnect by themselves).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A PostgreSQL cluster of this test alone (initdb in a fresh directory, a free port), so that
/// stopping it disturbs no other test. Stopped and removed when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

/// Whether the tests run as root (initdb and postgres refuse to: they run as `postgres` then).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL from Debian's packages under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .expect("initdb and pg_ctl under /usr/lib/postgresql/*/bin");
        let data =
            std::env::temp_dir().join(format!("herald-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(&data);
                    c
                },
                "chown",
            );
        }
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--auth=trust",
        ]);
        run(initdb, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let postgres = PrivatePostgres { bin, data, port };
        postgres.up();
        postgres
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn up(&self) {
        let mut start = as_postgres(&self.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.data.display()
            ))
            .args(["-w", "-t", "60", "start"]);
        run(start, "pg_ctl start");
    }

    fn down(&self) {
        let mut stop = as_postgres(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        run(stop, "pg_ctl stop");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut stop = as_postgres(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// `text` without the terminal colours of the text log format.
pub fn plain(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\u{1b}') {
        plain.push_str(&rest[..at]);
        rest = rest[at..]
            .find('m')
            .map(|m| &rest[at + m + 1..])
            .unwrap_or("");
    }
    plain.push_str(rest);
    plain
}

/// The API address `herald run` logged at start.
pub async fn api_address(herald: &Herald) -> String {
    wait_for(
        "the API's address in the log",
        Duration::from_secs(60),
        || {
            let text = plain(&herald.log_text());
            async move {
                text.lines()
                    .find(|l| l.contains("api listening"))
                    .and_then(|l| l.split("listen=").nth(1))
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
                    .filter(|a| !a.is_empty())
            }
        },
    )
    .await
}

async fn probe(http: &reqwest::Client, url: &str) -> (u16, Value) {
    match http.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(err) => panic!("{url}: {err}"),
    }
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_liveness_does_not() {
    let postgres = PrivatePostgres::start();
    let db = TestDb::create().await;
    let lane = new_lane();
    let url = postgres.url();
    let herald = Herald::start(
        &db,
        "smtp://127.0.0.1:9",
        &lane,
        &[
            ("HERALD_DATABASE_URL", url.as_str()),
            ("HERALD_LOG__FORMAT", "text"),
        ],
    );
    let address = api_address(&herald).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (live, ready) = (
        format!("http://{address}/health/live"),
        format!("http://{address}/health/ready"),
    );
    let up = wait_for("ready", Duration::from_secs(60), || {
        let (http, ready) = (http.clone(), ready.clone());
        async move {
            let (status, body) = probe(&http, &ready).await;
            (status == 200).then_some(body)
        }
    })
    .await;
    assert_eq!(up["status"], "ready", "{up}");
    for name in ["database", "migrations", "engine", "listeners"] {
        assert_eq!(check(&up, name)["status"], "up", "{up}");
    }

    postgres.down();
    let (status, down) = probe(&http, &ready).await;
    assert_eq!(status, 503, "{down}");
    assert_eq!(down["status"], "unready");
    assert_eq!(check(&down, "database")["status"], "down", "{down}");
    assert_eq!(check(&down, "engine")["status"], "up", "{down}");
    let text = down.to_string();
    assert!(
        !text.contains(&postgres.port.to_string()),
        "the answer names no address: {text}"
    );
    assert_eq!(
        probe(&http, &live).await.0,
        200,
        "liveness does not follow the database"
    );

    postgres.up();
    let back = wait_for("ready again", Duration::from_secs(60), || {
        let (http, ready) = (http.clone(), ready.clone());
        async move {
            let (status, body) = probe(&http, &ready).await;
            (status == 200).then_some(body)
        }
    })
    .await;
    assert_eq!(check(&back, "listeners")["status"], "up", "{back}");
    drop(herald);
}
