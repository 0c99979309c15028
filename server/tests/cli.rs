//! The offline commands (`load`, `query`, `check`) and the key rules of `serve` and
//! `demo` without `--keys`, run as the real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use uuid::Uuid;

fn prismdb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prismdb"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run prismdb")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn load_fills_a_team_that_query_reads_and_check_finds_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let team = Uuid::new_v4().to_string();
    let loaded = prismdb(&["load", "--data", data, "--team", &team, "--contacts", "300"]);
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));

    let args = [
        "query",
        "--data",
        data,
        "--team",
        &team,
        "--type",
        "deal",
        "--filter",
        r#"{"stage": "won"}"#,
        "--sort",
        "amount:desc",
        "--limit",
        "5",
        "--json",
    ];
    let json = prismdb(&args);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let page: Value = serde_json::from_slice(&json.stdout).unwrap();
    let rows = page["data"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.len() <= 5, "{page}");
    let amounts: Vec<i64> = rows
        .iter()
        .map(|r| r["properties"]["amount"].as_i64().unwrap())
        .collect();
    assert!(
        amounts.windows(2).all(|w| w[0] >= w[1]),
        "sorted descending: {amounts:?}"
    );
    assert!(rows.iter().all(|r| r["properties"]["stage"] == "won"));
    let total = page["total"].as_u64().unwrap();

    let table = prismdb(&args[..args.len() - 1]);
    assert!(table.status.success());
    let table = text(&table.stdout);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("id") && header.contains("amount") && header.contains("stage"),
        "{table}"
    );
    assert!(table.contains(&format!("of {total};")), "{table}");
    assert_eq!(table.lines().count(), rows.len() + 2, "{table}");

    let count = prismdb(&[
        "query", "--data", data, "--team", &team, "--json", "--limit", "1",
    ]);
    let page: Value = serde_json::from_slice(&count.stdout).unwrap();
    assert_eq!(page["total"], 300, "contacts loaded");

    let bad = prismdb(&[
        "query",
        "--data",
        data,
        "--team",
        &team,
        "--filter",
        r#"{"nope": 1}"#,
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("invalid filter"),
        "{}",
        text(&bad.stderr)
    );

    let check = prismdb(&["check", "--data", data]);
    assert!(check.status.success(), "{}", text(&check.stdout));
    assert!(text(&check.stdout).starts_with("ok:"));
}

#[test]
fn without_keys_the_server_is_loopback_only_with_a_local_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let refused = prismdb(&["serve", "--data", data, "--listen", "0.0.0.0:0"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("loopback"),
        "{}",
        text(&refused.stderr)
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_prismdb"))
        .args([
            "demo",
            "--data",
            data,
            "--listen",
            "127.0.0.1:0",
            "--contacts",
            "200",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = String::new();
    let mut key = String::new();
    let mut curls = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("prismdb listening on http://") {
            addr = rest.to_owned();
        } else if let Some(rest) = line.strip_prefix("API key: ") {
            key = rest.to_owned();
        } else if line.trim_start().starts_with("curl ") {
            curls.push(line);
        } else if line.starts_with("OpenAPI document") {
            break;
        }
    }
    assert_eq!(curls.len(), 3);
    let saved = std::fs::read_to_string(dir.path().join("data/local-keys.json")).unwrap();
    let saved: Value = serde_json::from_str(&saved).unwrap();
    let team = saved[&key]["team"]
        .as_str()
        .expect("the printed key is the saved one")
        .to_owned();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{addr}/v2/prism/{team}/contact/count");
    let count: Value = client
        .get(&url)
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(count["total"], 200);
    let status = client.get(&url).send().unwrap().status();
    assert_eq!(status, 401);
    child.kill().unwrap();
    child.wait().unwrap();
}
