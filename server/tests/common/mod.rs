//! Starts the real `prismdb` binary on a free loopback port over a data directory, and
//! calls it with a real HTTP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// The principals of the keys file every test server accepts.
pub struct Keys {
    pub team: Uuid,
    pub other_team: Uuid,
    pub group: Uuid,
    pub admin_user: Uuid,
    pub member_user: Uuid,
    pub grouped_user: Uuid,
}

/// Keys: `admin`, `member`, `grouped` (a member of `group`), `system` of `team`, and
/// `outsider` (an admin of `other_team`).
pub const ADMIN: &str = "admin-key";
pub const MEMBER: &str = "member-key";
pub const GROUPED: &str = "grouped-key";
pub const SYSTEM: &str = "system-key";
pub const OUTSIDER: &str = "outsider-key";

impl Keys {
    pub fn new() -> Keys {
        Keys {
            team: Uuid::new_v4(),
            other_team: Uuid::new_v4(),
            group: Uuid::new_v4(),
            admin_user: Uuid::new_v4(),
            member_user: Uuid::new_v4(),
            grouped_user: Uuid::new_v4(),
        }
    }

    fn file(&self) -> Value {
        let entry = |team: Uuid, user: Uuid, groups: Vec<Uuid>, role: &str| json!({"team": team, "user": user, "groups": groups, "role": role});
        json!({
            ADMIN: entry(self.team, self.admin_user, vec![], "admin"),
            MEMBER: entry(self.team, self.member_user, vec![], "member"),
            GROUPED: entry(self.team, self.grouped_user, vec![self.group], "member"),
            SYSTEM: entry(self.team, Uuid::new_v4(), vec![], "system"),
            OUTSIDER: entry(self.other_team, Uuid::new_v4(), vec![], "admin"),
        })
    }
}

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
    pub data: PathBuf,
    pub team: Uuid,
    client: Client,
}

impl Server {
    /// Starts `prismdb serve` on `data` with the keys of `keys`, and waits until it
    /// listens.
    pub fn start(data: &Path, keys: &Keys) -> Server {
        Server::start_with(data, keys, &[])
    }

    /// Starts `prismdb serve` with extra arguments.
    pub fn start_with(data: &Path, keys: &Keys, extra: &[&str]) -> Server {
        let keys_path = data.with_extension("keys.json");
        std::fs::write(&keys_path, keys.file().to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_prismdb"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--keys")
            .arg(&keys_path)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prismdb");
        let addr = listening_address(&mut child);
        Server {
            child,
            base: format!("http://{addr}/v2/prism/{}", keys.team),
            data: data.to_path_buf(),
            team: keys.team,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// The root of the server (`http://127.0.0.1:port`).
    pub fn root(&self) -> String {
        let end = self.base.find("/v2/").unwrap();
        self.base[..end].to_owned()
    }

    /// Calls `method base+path` with `key` (if any) and a JSON body (if any); returns the
    /// status and the body parsed as JSON (`Null` when empty).
    pub fn call(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.try_call(key, method, path, body).expect("request")
    }

    /// Like [`Server::call`], but `None` when no answer came (the server died).
    pub fn try_call(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.client.request(method, url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().ok()?;
        let status = response.status().as_u16();
        let text = response.text().ok()?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Some((status, value))
    }

    /// Sends raw bytes as the body of `method base+path`.
    pub fn call_raw(&self, key: &str, method: Method, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("request");
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get(&self, key: &str, path: &str) -> (u16, Value) {
        self.call(Some(key), Method::GET, path, None)
    }

    pub fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(Some(key), Method::POST, path, Some(body))
    }

    pub fn put(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(Some(key), Method::PUT, path, Some(body))
    }

    pub fn patch(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(Some(key), Method::PATCH, path, Some(body))
    }

    pub fn delete(&self, key: &str, path: &str) -> (u16, Value) {
        self.call(Some(key), Method::DELETE, path, None)
    }

    /// Creates a record and returns its id, asserting 201.
    pub fn create(&self, key: &str, ty: &str, default: Value) -> String {
        let (status, body) = self.post(key, &format!("/{ty}"), json!({"default": default}));
        assert_eq!(status, 201, "create {ty}: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Sends a signal (`KILL`, `TERM`) to the server without waiting for it.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and returns whether the server exited successfully.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap().success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_address(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("prismdb listening on http://") {
            let addr = addr.trim().to_owned();
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return addr;
        }
    }
    panic!("prismdb exited before listening");
}
