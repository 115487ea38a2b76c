//! The real `edgewise-origin` binary as a child process, for tests that kill
//! and restart it.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The ingest key every test server is started with.
pub const INGEST_KEY: &str = "test-ingest-key";

/// The user-token secret every test server is started with.
pub const USER_SECRET: &str = "test-user-token-secret-32-bytes-long";

/// A client that sends the ingest key with every request.
pub fn ingest_client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-api-key", reqwest::header::HeaderValue::from_static(INGEST_KEY));
    reqwest::Client::builder().default_headers(h).build().expect("client")
}

/// A token for `user`, valid for five minutes.
pub fn user_token(user: u64) -> String {
    edgewise_http::auth::mint_hs256(USER_SECRET.as_bytes(), &edgewise_http::auth::TokenSpec::new(user, 300))
        .expect("a token mints")
}

/// A running server.
pub struct Origin {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// Every log line so far (JSON).
    pub logs: Arc<Mutex<Vec<Value>>>,
}

impl Origin {
    /// Starts the server on an ephemeral port with `env` (plus [`INGEST_KEY`]
    /// and [`USER_SECRET`]) and waits until `/readyz` says ready.
    pub async fn start(data_dir: &Path, shards: usize, env: &[(&str, String)]) -> Origin {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgewise-origin"))
            .args(["--log-format", "json", "--data-dir"])
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", &shards.to_string()])
            .env("EDGEWISE__AUTH__INGEST_KEYS", format!("[\"{INGEST_KEY}\"]"))
            .env("EDGEWISE__AUTH__USER_TOKENS__HMAC_SECRETS", format!("[\"{USER_SECRET}\"]"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if let Some(addr) = v["fields"]["addr"].as_str() {
                        let _ = tx.send(addr.to_string());
                    }
                    sink.lock().expect("log lock").push(v);
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the server logs its address");
        let url = format!("http://{addr}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{url}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "server never became ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Origin { child, url, logs }
    }

    /// Log messages (the `fields.message` of each line) so far.
    pub fn messages(&self) -> Vec<String> {
        let logs = self.logs.lock().expect("log lock");
        logs.iter()
            .map(|v| {
                let f = &v["fields"];
                let mut m = f["message"].as_str().unwrap_or_default().to_string();
                if let Some(e) = f["error"].as_str() {
                    m.push_str(": ");
                    m.push_str(e);
                }
                m
            })
            .collect()
    }

    /// Log lines at ERROR level so far.
    pub fn errors(&self) -> Vec<Value> {
        self.logs.lock().expect("log lock").iter().filter(|v| v["level"] == "ERROR").cloned().collect()
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for a clean exit; returns the log messages.
    pub fn stop(mut self) -> Vec<String> {
        let st = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill -TERM");
        assert!(st.success(), "kill -TERM failed");
        let status = self.child.wait().expect("reaped");
        assert!(status.success(), "the server exits cleanly on SIGTERM, got {status}");
        // Give the log reader a moment to drain the pipe.
        std::thread::sleep(Duration::from_millis(50));
        self.messages()
    }
}
