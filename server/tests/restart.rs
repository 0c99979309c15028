//! The server killed with SIGKILL in the middle of writes, or stopped with SIGTERM, and
//! started again on the same data directory: every acknowledged write is there, nothing
//! else changed, async imports finish, and the indexes agree with the records.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// What the clients were told about each record: its last acknowledged state (`None` =
/// deleted), and the state an unanswered request would leave (the request cut off by the
/// kill may or may not have committed; later ones cannot have).
#[derive(Default)]
struct Expected {
    acked: Option<Value>,
    unanswered: Option<Option<Value>>,
}

type Acknowledged = BTreeMap<String, Expected>;

fn answered(acked: &Mutex<Acknowledged>, id: &str, state: Option<Value>) {
    let mut acked = acked.lock().unwrap();
    let expected = acked.entry(id.to_owned()).or_default();
    expected.acked = state;
    expected.unanswered = None;
}

fn unanswered(acked: &Mutex<Acknowledged>, id: &str, state: Option<Value>) {
    let mut acked = acked.lock().unwrap();
    let expected = acked.entry(id.to_owned()).or_default();
    expected.unanswered.get_or_insert(state);
}

/// One client: creates, patches and deletes its own records until `stop`, recording each
/// acknowledged outcome and the first unanswered request per record.
fn client(server: &Server, worker: usize, stop: &AtomicBool, acked: &Mutex<Acknowledged>) {
    let mut mine: Vec<String> = Vec::new();
    let mut step = 0usize;
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        let choice = step % 5;
        if mine.is_empty() || choice < 3 {
            let name = format!("w{worker} s{step}");
            let email = format!("w{worker}s{step}@example.com");
            let body = json!({"default": {"name": name, "email": email}});
            let Some((201, record)) = try_call(server, "POST", "/contact", Some(body)) else {
                continue;
            };
            let id = record["id"].as_str().unwrap().to_owned();
            answered(acked, &id, Some(record["default"]["name"].clone()));
            mine.push(id);
        } else if choice == 3 {
            let id = mine[step % mine.len()].clone();
            let name = json!(format!("patched {step}"));
            let body = json!({"default": {"name": name}});
            match try_call(server, "PATCH", &format!("/contact/{id}"), Some(body)) {
                Some((200, record)) => {
                    answered(acked, &id, Some(record["default"]["name"].clone()))
                }
                _ => unanswered(acked, &id, Some(name)),
            }
        } else {
            let id = mine.swap_remove(step % mine.len());
            match try_call(server, "DELETE", &format!("/contact/{id}"), None) {
                Some((204, _)) => answered(acked, &id, None),
                _ => unanswered(acked, &id, None),
            }
        }
    }
}

/// A call that may be cut off by the kill: `None` when no answer came.
fn try_call(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    server.try_call(Some(MEMBER), method, path, body)
}

fn check_integrity(data: &std::path::Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_prismdb"))
        .arg("check")
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "prismdb check: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn acknowledged_writes_survive_kill_9_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = Keys::new();
    let acked = Arc::new(Mutex::new(Acknowledged::new()));
    for round in 0..4u64 {
        let server = Arc::new(Server::start(&data, &keys));
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..3)
            .map(|worker| {
                let (server, stop, acked) =
                    (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&acked));
                std::thread::spawn(move || {
                    client(&server, worker + 3 * round as usize, &stop, &acked)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + 170 * round));
        // Kill while requests are in flight, then let the clients notice and stop.
        server.signal("KILL");
        stop.store(true, Ordering::Relaxed);
        for handle in clients {
            handle.join().unwrap();
        }
        drop(server);
        let restarted = Server::start(&data, &keys);
        let mut acked = acked.lock().unwrap();
        assert!(!acked.is_empty());
        for (id, expected) in acked.iter() {
            let (status, record) = restarted.get(MEMBER, &format!("/contact/{id}"));
            let found = (status == 200).then(|| record["default"]["name"].clone());
            assert!(status == 200 || status == 404, "{id}: {status} {record}");
            let allowed = found == expected.acked || Some(&found) == expected.unanswered.as_ref();
            assert!(
                allowed,
                "{id} after round {round}: found {found:?}, acknowledged {:?}, unanswered {:?}",
                expected.acked, expected.unanswered
            );
        }
        // What the restarted server holds is now what the next round starts from.
        for (id, expected) in acked.iter_mut() {
            let (status, record) = restarted.get(MEMBER, &format!("/contact/{id}"));
            expected.acked = (status == 200).then(|| record["default"]["name"].clone());
            expected.unanswered = None;
        }
        drop(restarted);
        check_integrity(&data);
    }
}

#[test]
fn sigterm_stops_the_server_cleanly_and_async_imports_resume_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = Keys::new();
    let server = Server::start(&data, &keys);
    let rows: Vec<Value> = (0..40_000)
        .map(|i| json!({"name": format!("Row {i}"), "email": format!("row{i}@example.com")}))
        .collect();
    let (status, job) = server.post(
        MEMBER,
        "/contact/import",
        json!({"rows": rows, "mode": "async"}),
    );
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(400));
    server.kill();

    let server = Server::start(&data, &keys);
    let done = (0..1200)
        .find_map(|_| {
            let (status, job) = server.get(MEMBER, &format!("/contact/imports/{job_id}"));
            assert_eq!(status, 200, "{job}");
            (job["status"] != "processing").then_some(job).or_else(|| {
                std::thread::sleep(Duration::from_millis(100));
                None
            })
        })
        .expect("the job finishes after the restart");
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(
        (done["succeeded"].as_u64(), done["failed"].as_u64()),
        (Some(40_000), Some(0))
    );
    let (_, count) = server.get(MEMBER, "/contact/count");
    assert_eq!(count["total"], 40_000, "no row applied twice");
    let id = server.create(MEMBER, "contact", json!({"name": "Last"}));
    assert!(server.terminate(), "SIGTERM exits with success");
    check_integrity(&data);
    let server = Server::start(&data, &keys);
    let (status, _) = server.get(MEMBER, &format!("/contact/{id}"));
    assert_eq!(status, 200);
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = Keys::new();
    let server = Arc::new(Server::start(&data, &keys));
    let rows: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("Row {i}"), "email": format!("row{i}@example.com")}))
        .collect();
    let importer = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || {
            server.post(
                MEMBER,
                "/contact/import",
                json!({"rows": rows, "mode": "sync"}),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(30));
    server.signal("TERM");
    let (status, job) = importer.join().unwrap();
    assert_eq!((status, &job["succeeded"]), (200, &json!(1000)), "{job}");
    let server = Arc::into_inner(server).expect("the importer is done");
    assert!(server.terminate(), "the server exits with success");
    let server = Server::start(&data, &keys);
    let (_, count) = server.get(MEMBER, "/contact/count");
    assert_eq!(count["total"], 1000);
}

#[test]
fn the_server_purges_the_trash_past_its_retention() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = Keys::new();
    let server = Server::start(&data, &keys);
    let id = server.create(MEMBER, "contact", json!({"name": "Gone"}));
    let (status, _) = server.delete(MEMBER, &format!("/contact/{id}"));
    assert_eq!(status, 204);
    let trash = |server: &Server| {
        let (_, page) = server.post(MEMBER, "/contact/query", json!({"deleted": true}));
        page["data"].as_array().unwrap().len()
    };
    assert_eq!(trash(&server), 1);
    drop(server);
    let server = Server::start_with(&data, &keys, &["--trash-days", "30"]);
    assert_eq!(trash(&server), 1, "30 days have not passed");
    drop(server);
    let server = Server::start_with(&data, &keys, &["--trash-days", "0"]);
    let purged = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        trash(&server) == 0
    });
    assert!(
        purged,
        "the purge at start removes what is past a retention of 0 days"
    );
    let (status, _) = server.post(MEMBER, &format!("/contact/{id}/restore"), json!({}));
    assert_eq!(status, 404);
}
