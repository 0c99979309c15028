//! Every route of the HTTP API, called on the real binary with a real client: statuses,
//! bodies, errors, auth and team isolation.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn start() -> (tempfile::TempDir, Server, Keys) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new();
    let server = Server::start(&dir.path().join("data"), &keys);
    (dir, server, keys)
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

#[test]
fn records_go_through_create_get_patch_delete_restore_and_duplicate() {
    let (_dir, server, _) = start();
    let (status, created) = server.post(
        MEMBER,
        "/contact",
        json!({"default": {"name": "Ada", "email": "ada@example.com", "title": "Countess"}}),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["default"]["name"], "Ada");
    assert!(created["default"]["created_at"].is_string());

    let (status, read) = server.get(MEMBER, &format!("/contact/{id}"));
    assert_eq!((status, &read), (200, &created));

    let (status, patched) = server.patch(
        MEMBER,
        &format!("/contact/{id}"),
        json!({"default": {"title": null, "phone": "+44 20 7946 0958"}}),
    );
    assert_eq!(status, 200, "{patched}");
    assert!(
        patched["default"].get("title").is_none(),
        "null removes: {patched}"
    );
    assert_eq!(patched["default"]["phone"], "+44 20 7946 0958");

    let (status, copy) = server.post(MEMBER, &format!("/contact/{id}/duplicate"), json!({}));
    assert_eq!(status, 201, "{copy}");
    assert_ne!(copy["id"], patched["id"]);
    assert_eq!(copy["default"]["name"], "Ada");
    assert!(
        copy["default"].get("email").is_none(),
        "unique values are not copied: {copy}"
    );

    let (status, count) = server.get(MEMBER, "/contact/count");
    assert_eq!((status, count["total"].as_u64()), (200, Some(2)));

    let (status, body) = server.delete(MEMBER, &format!("/contact/{id}"));
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = server.get(MEMBER, &format!("/contact/{id}"));
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (_, count) = server.get(MEMBER, "/contact/count");
    assert_eq!(count["total"], 1);

    let (status, trash) = server.post(MEMBER, "/contact/query", json!({"deleted": true}));
    assert_eq!(status, 200, "{trash}");
    assert_eq!(trash["data"].as_array().unwrap().len(), 1);
    assert_eq!(trash["data"][0]["id"], id);

    let (status, restored) = server.post(MEMBER, &format!("/contact/{id}/restore"), json!({}));
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["default"]["email"], "ada@example.com");
    let (status, _) = server.get(MEMBER, &format!("/contact/{id}"));
    assert_eq!(status, 200);
}

#[test]
fn list_pages_in_id_order_with_cursor_selection_and_total() {
    let (_dir, server, _) = start();
    let mut ids: Vec<String> = (0..7)
        .map(|i| {
            server.create(
                ADMIN,
                "organization",
                json!({"name": format!("Org {i}"), "domain": format!("o{i}.example")}),
            )
        })
        .collect();
    ids.sort();
    let mut seen = Vec::new();
    let mut path = "/organization?limit=3&include_total=true&properties=name".to_owned();
    loop {
        let (status, page) = server.get(ADMIN, &path);
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 7);
        for row in page["data"].as_array().unwrap() {
            assert_eq!(
                row["properties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .collect::<Vec<_>>(),
                ["name"]
            );
            assert_eq!(row["is_user_object"], true);
            seen.push(row["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        let cursor = page["next_cursor"].as_str().unwrap();
        path = format!("/organization?limit=3&include_total=true&properties=name&cursor={cursor}");
    }
    assert_eq!(seen, ids);

    let (status, body) = server.get(ADMIN, "/organization?limit=0");
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    let (status, body) = server.get(ADMIN, "/organization?cursor=AAAA");
    assert_eq!((status, code(&body)), (400, "invalid_cursor"));
    let (status, body) = server.get(ADMIN, "/organization?limit=abc");
    assert_eq!((status, code(&body)), (400, "invalid_request"));
}

#[test]
fn query_filters_sorts_pages_and_references_come_back_with_names() {
    let (_dir, server, _) = start();
    let org = server.create(
        ADMIN,
        "organization",
        json!({"name": "Acme", "domain": "acme.io"}),
    );
    for i in 0..30 {
        let stage = ["lead", "qualified", "won"][i % 3];
        server.create(ADMIN, "deal", json!({"name": format!("Deal {i}"), "amount": i * 100, "stage": stage, "organization": if i % 2 == 0 { json!(org) } else { Value::Null }}));
    }
    let filter = json!({"$and": [{"stage": {"$in": ["lead", "won"]}}, {"organization.domain": {"$ends_with": ".io"}}]});
    let mut amounts = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let body = json!({"filter": filter, "sort": [{"property": "amount", "direction": "desc"}], "limit": 4, "cursor": cursor, "include_total": true, "properties": ["amount", "organization"]});
        let (status, page) = server.post(ADMIN, "/deal/query", body);
        assert_eq!(status, 200, "{page}");
        for row in page["data"].as_array().unwrap() {
            assert_eq!(
                row["properties"]["organization"],
                json!({"id": org, "properties": {"name": "Acme"}})
            );
            amounts.push(row["properties"]["amount"].as_i64().unwrap());
        }
        assert_eq!(page["total"], 10);
        if page["has_more"] == false {
            break;
        }
        cursor = page["next_cursor"].clone();
    }
    let mut expected: Vec<i64> = (0..30)
        .filter(|i| i % 2 == 0 && i % 3 != 1)
        .map(|i| i * 100)
        .collect();
    expected.reverse();
    assert_eq!(amounts, expected);

    let (status, body) = server.post(
        ADMIN,
        "/deal/query",
        json!({"filter": {"$and": [{"amount": {"$gte": "x"}}]}}),
    );
    assert_eq!((status, code(&body)), (400, "invalid_filter"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/filter/$and/0/amount/$gte"),
        "{body}"
    );
    let (status, body) = server.post(ADMIN, "/deal/query", json!({"filter": {"nope": 1}}));
    assert_eq!((status, code(&body)), (400, "invalid_filter"));
    let (status, body) = server.post(ADMIN, "/deal/query", json!({"limit": 5, "unknown": true}));
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    let (status, body) = server.post(ADMIN, "/contact/query", json!({"cursor": cursor}));
    assert_eq!((status, code(&body)), (400, "invalid_cursor"));
}

#[test]
fn find_and_upsert_by_property_value() {
    let (_dir, server, _) = start();
    let id = server.create(
        MEMBER,
        "contact",
        json!({"name": "Grace", "email": "grace@navy.mil", "title": "Admiral"}),
    );
    let (status, found) = server.get(MEMBER, "/contact/by/email/GRACE@navy.mil");
    assert_eq!((status, found["id"].as_str()), (200, Some(id.as_str())));
    let (status, body) = server.get(MEMBER, "/contact/by/email/nobody@example.com");
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = server.get(MEMBER, "/contact/by/nope/x");
    assert_eq!((status, code(&body)), (400, "unknown_property"));

    let (status, updated) = server.put(
        MEMBER,
        "/contact/by/email/grace@navy.mil",
        json!({"default": {"title": "Rear Admiral"}}),
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["id"].as_str(), &updated["default"]["title"]),
        (Some(id.as_str()), &json!("Rear Admiral"))
    );
    let (status, made) = server.put(
        MEMBER,
        "/contact/by/email/alan@example.com",
        json!({"default": {"name": "Alan"}}),
    );
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["default"]["email"], "alan@example.com");

    server.create(MEMBER, "contact", json!({"name": "Twin", "title": "Same"}));
    server.create(MEMBER, "contact", json!({"name": "Twin", "title": "Same"}));
    let (status, body) = server.get(MEMBER, "/contact/by/title/Same");
    assert_eq!((status, code(&body)), (409, "multiple_matches"));
    let (status, body) = server.put(MEMBER, "/contact/by/title/Same", json!({"default": {}}));
    assert_eq!((status, code(&body)), (409, "multiple_matches"));

    let (status, body) = server.post(
        MEMBER,
        "/contact",
        json!({"default": {"name": "Copy", "email": "grace@navy.mil"}}),
    );
    assert_eq!((status, code(&body)), (409, "unique_violation"));
}

#[test]
fn malformed_input_gets_a_4xx_with_a_code_never_a_5xx() {
    let (_dir, server, _) = start();
    let id = server.create(MEMBER, "contact", json!({"name": "Ada"}));
    let cases: Vec<(Method, String, Vec<u8>, u16, &str)> = vec![
        (
            Method::POST,
            "/contact".into(),
            b"{not json".to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/contact".into(),
            b"[1,2]".to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/contact".into(),
            br#"{"default": {"name": 5}}"#.to_vec(),
            400,
            "invalid_value",
        ),
        (
            Method::POST,
            "/contact".into(),
            br#"{"default": {"nope": 5}}"#.to_vec(),
            400,
            "unknown_property",
        ),
        (
            Method::POST,
            "/contact".into(),
            br#"{"default": {"created_at": "x"}}"#.to_vec(),
            400,
            "read_only_property",
        ),
        (
            Method::POST,
            "/contact".into(),
            br#"{"default": {}, "extra": 1}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::PATCH,
            format!("/contact/{id}"),
            b"".to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::PATCH,
            "/contact/not-a-uuid".into(),
            br#"{"default": {}}"#.to_vec(),
            400,
            "invalid_id",
        ),
        (
            Method::GET,
            "/contact/not-a-uuid".into(),
            vec![],
            400,
            "invalid_id",
        ),
        (
            Method::POST,
            "/event".into(),
            br#"{"default": {"name": "x"}}"#.to_vec(),
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/widget".into(),
            br#"{"default": {}}"#.to_vec(),
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/contact/query".into(),
            br#"{"filter": {"$or": 3}}"#.to_vec(),
            400,
            "invalid_filter",
        ),
        (
            Method::POST,
            "/contact/import".into(),
            br#"{"rows": 3}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            "/contact/batch/update".into(),
            br#"{"items": [{"id": 1}]}"#.to_vec(),
            200,
            "",
        ),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let (status, answer) = server.call_raw(MEMBER, method.clone(), &path, body);
        let why = format!("{method} {path}: {answer}");
        assert_eq!(status, want_status, "{why}");
        if !want_code.is_empty() {
            assert_eq!(code(&answer), want_code, "{why}");
            assert!(
                !answer["error"]["message"].as_str().unwrap().is_empty(),
                "{why}"
            );
        }
    }
    let (status, body) = server.call(Some(MEMBER), Method::GET, "/contact/../../x", None);
    assert!(status == 404 || status == 400, "{status} {body}");
    let (status, body) = server.call(Some(MEMBER), Method::PUT, "/contact", None);
    assert_eq!((status, code(&body)), (405, "invalid_request"));
    let (status, body) = server.call(
        Some(MEMBER),
        Method::GET,
        &format!("{}/nowhere", server.root()),
        None,
    );
    assert_eq!((status, code(&body)), (404, "not_found"));
}

#[test]
fn bodies_over_16_mib_are_refused_with_413() {
    let (_dir, server, _) = start();
    let name = "x".repeat(17 << 20);
    let body = format!(r#"{{"default": {{"name": "{name}"}}}}"#).into_bytes();
    let (status, answer) = server.call_raw(MEMBER, Method::POST, "/contact", body);
    assert_eq!((status, code(&answer)), (413, "limit_exceeded"));
    let (_, count) = server.get(MEMBER, "/contact/count");
    assert_eq!(count["total"], 0);
}

#[test]
fn keys_decide_who_calls_and_other_teams_see_nothing() {
    let (_dir, server, keys) = start();
    let id = server.create(ADMIN, "contact", json!({"name": "Ada"}));
    for key in [None, Some("wrong-key")] {
        let (status, body) = server.call(key, Method::GET, &format!("/contact/{id}"), None);
        assert_eq!((status, code(&body)), (401, "unauthenticated"));
    }
    let (status, body) = server.get(OUTSIDER, &format!("/contact/{id}"));
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = server.get(OUTSIDER, "/contact/count");
    assert_eq!((status, code(&body)), (404, "not_found"));
    let own = format!("{}/v2/prism/{}", server.root(), keys.other_team);
    let (status, body) = server.call(
        Some(OUTSIDER),
        Method::GET,
        &format!("{own}/contact/count"),
        None,
    );
    assert_eq!((status, body["total"].as_u64()), (200, Some(0)));
    let (status, body) = server.call(
        Some(OUTSIDER),
        Method::GET,
        &format!("{own}/contact/{id}"),
        None,
    );
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = server.call(
        Some(OUTSIDER),
        Method::PATCH,
        &format!("{own}/contact/{id}"),
        Some(json!({"default": {"name": "Mine"}})),
    );
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = server.call(
        Some(ADMIN),
        Method::GET,
        &format!("{}/v2/prism/not-a-team/contact", server.root()),
        None,
    );
    assert_eq!((status, code(&body)), (400, "invalid_request"));
}

/// A grant without its empty members (the server writes `team_group_id: []` and the like).
fn without_empty(grant: Value) -> Value {
    let kept = grant.as_object().unwrap().iter().filter(|(_, v)| match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    });
    Value::Object(kept.map(|(k, v)| (k.clone(), v.clone())).collect())
}

#[test]
fn grants_decide_what_members_see_and_change() {
    let (_dir, server, keys) = start();
    let deal = server.create(MEMBER, "deal", json!({"name": "Big", "amount": 10}));
    let (status, grant) = server.get(MEMBER, &format!("/deal/{deal}/grant"));
    assert_eq!(status, 200, "{grant}");
    assert_eq!(
        without_empty(grant),
        json!({"team_id": {keys.team.to_string(): "w"}, "user_id": [{keys.member_user.to_string(): "a"}]})
    );

    let private = json!({"team_group_id": [{keys.group.to_string(): "r"}], "user_id": [{keys.member_user.to_string(): "a"}]});
    let (status, body) = server.put(GROUPED, &format!("/deal/{deal}/grant"), private.clone());
    assert_eq!((status, code(&body)), (403, "permission_denied"));
    let (status, body) = server.put(MEMBER, &format!("/deal/{deal}/grant"), private.clone());
    assert_eq!((status, without_empty(body)), (200, private.clone()));

    let (status, _) = server.get(GROUPED, &format!("/deal/{deal}"));
    assert_eq!(status, 200);
    let (status, body) = server.patch(
        GROUPED,
        &format!("/deal/{deal}"),
        json!({"default": {"amount": 1}}),
    );
    assert_eq!((status, code(&body)), (403, "permission_denied"));
    let (status, body) = server.get(SYSTEM, &format!("/deal/{deal}"));
    assert_eq!((status, body["id"].as_str()), (200, Some(deal.as_str())));
    let other = server.create(ADMIN, "deal", json!({"name": "Other"}));
    let (status, body) = server.get(GROUPED, "/deal/count");
    assert_eq!((status, body["total"].as_u64()), (200, Some(2)));
    let (status, body) = server.put(
        MEMBER,
        &format!("/deal/{other}/grant"),
        json!({"user_id": [{keys.admin_user.to_string(): "a"}]}),
    );
    assert_eq!(
        (status, code(&body)),
        (403, "permission_denied"),
        "the team may write it, not change its grant"
    );
    let (status, _) = server.put(
        ADMIN,
        &format!("/deal/{other}/grant"),
        json!({"user_id": [{keys.admin_user.to_string(): "a"}]}),
    );
    assert_eq!(status, 200);
    let (status, body) = server.get(GROUPED, "/deal/count");
    assert_eq!((status, body["total"].as_u64()), (200, Some(1)));
    let (status, body) = server.get(GROUPED, &format!("/deal/{other}"));
    assert_eq!((status, code(&body)), (404, "not_found"));

    let (status, body) = server.put(
        MEMBER,
        &format!("/deal/{deal}/grant"),
        json!({"user_id": [{keys.member_user.to_string(): "w"}]}),
    );
    assert_eq!(
        (status, code(&body)),
        (400, "invalid_value"),
        "a grant nobody administers"
    );
    let (status, body) = server.put(
        MEMBER,
        &format!("/deal/{deal}/grant"),
        json!({"user_id": [{keys.member_user.to_string(): "x"}]}),
    );
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    let contact = server.create(MEMBER, "contact", json!({"name": "Ada"}));
    let (status, body) = server.get(MEMBER, &format!("/contact/{contact}/grant"));
    assert_eq!((status, code(&body)), (400, "invalid_request"));

    let (status, body) = server.get(SYSTEM, "/event/count");
    assert_eq!((status, body["total"].as_u64()), (200, Some(0)));
}

#[test]
fn bulk_calls_report_each_item_and_commit_the_rest() {
    let (_dir, server, _) = start();
    let a = server.create(
        MEMBER,
        "contact",
        json!({"name": "A", "email": "a@example.com"}),
    );
    let b = server.create(
        MEMBER,
        "contact",
        json!({"name": "B", "email": "b@example.com"}),
    );
    let missing = uuid::Uuid::now_v7().to_string();
    let body = json!({"items": [
        {"id": a, "default": {"title": "ok"}},
        {"id": "not-an-id", "default": {}},
        {"id": 42, "default": {}},
        {"id": b, "default": {"email": "a@example.com"}},
        {"id": missing, "default": {"title": "x"}},
    ]});
    let (status, answer) = server.post(MEMBER, "/contact/batch/update", body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["summary"],
        json!({"total": 5, "succeeded": 1, "failed": 4})
    );
    let results = answer["results"].as_array().unwrap();
    assert_eq!(
        (
            &results[0]["status"],
            &results[0]["record"]["default"]["title"]
        ),
        (&json!("ok"), &json!("ok"))
    );
    assert_eq!(
        (&results[1]["id"], code(&results[1])),
        (&Value::Null, "invalid_id")
    );
    assert_eq!(
        (&results[2]["id"], code(&results[2])),
        (&Value::Null, "invalid_id")
    );
    assert_eq!(
        (results[3]["id"].as_str(), code(&results[3])),
        (Some(b.as_str()), "unique_violation")
    );
    assert_eq!(code(&results[4]), "not_found");

    let (status, answer) =
        server.post(MEMBER, "/contact/batch/delete", json!({"ids": [a, "nope"]}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["summary"],
        json!({"total": 2, "succeeded": 1, "failed": 1})
    );
    let (_, count) = server.get(MEMBER, "/contact/count");
    assert_eq!(count["total"], 1);

    let ids: Vec<String> = (0..1001).map(|_| missing.clone()).collect();
    let (status, answer) = server.post(MEMBER, "/contact/batch/delete", json!({"ids": ids}));
    assert_eq!((status, code(&answer)), (413, "limit_exceeded"));
}

#[test]
fn imports_run_sync_inline_and_async_in_the_servers_worker() {
    let (_dir, server, _) = start();
    let existing = server.create(
        MEMBER,
        "contact",
        json!({"name": "Old", "email": "old@example.com"}),
    );
    let rows = json!([
        {"name": "Old again", "email": "old@example.com"},
        {"name": "New", "email": "new@example.com"},
        {"name": 5},
    ]);
    let (status, job) = server.post(
        MEMBER,
        "/contact/import",
        json!({"rows": rows, "dedupe_key": "email", "mode": "sync"}),
    );
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "complete");
    assert_eq!(
        (
            job["total"].as_u64(),
            job["succeeded"].as_u64(),
            job["failed"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(
        job["results"][0],
        json!({"id": existing, "created": false, "existing": true})
    );
    assert_eq!(job["results"][1]["created"], true);
    assert_eq!(code(&job["results"][2]), "invalid_value");

    let rows: Vec<Value> = (0..2500)
        .map(|i| json!({"name": format!("Row {i}"), "email": format!("row{i}@example.com")}))
        .collect();
    let (status, job) = server.post(MEMBER, "/contact/import", json!({"rows": rows}));
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_owned();
    let done = (0..600)
        .find_map(|_| {
            let (status, job) = server.get(MEMBER, &format!("/contact/imports/{job_id}"));
            assert_eq!(status, 200, "{job}");
            if job["status"] == "processing" {
                std::thread::sleep(std::time::Duration::from_millis(100));
                return None;
            }
            Some(job)
        })
        .expect("the job finishes within a minute");
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(
        (done["processed"].as_u64(), done["succeeded"].as_u64()),
        (Some(2500), Some(2500))
    );
    assert!(done["expires_at"].is_string());
    let (_, count) = server.get(MEMBER, "/contact/count");
    assert_eq!(count["total"], 2502);
    let (status, body) = server.get(GROUPED, &format!("/contact/imports/{job_id}"));
    assert_eq!(
        (status, code(&body)),
        (404, "not_found"),
        "another member's job"
    );
    let (status, body) = server.get(
        MEMBER,
        &format!("/contact/imports/{}", uuid::Uuid::new_v4()),
    );
    assert_eq!((status, code(&body)), (404, "not_found"));
}

#[test]
fn the_schema_is_read_and_changed_over_http_by_admins() {
    let (_dir, server, _) = start();
    let (status, catalog) = server.get(MEMBER, "/deal/properties");
    assert_eq!(status, 200, "{catalog}");
    let stage = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["slug"] == "stage")
        .unwrap();
    assert_eq!(stage["kind"], "select");
    assert_eq!(stage["options"][0]["slug"], "lead");

    let spec = json!({"slug": "tier", "kind": "select", "options": [{"slug": "gold"}, {"slug": "silver", "label": "Silver"}]});
    let (status, body) = server.post(MEMBER, "/contact/properties", spec.clone());
    assert_eq!((status, code(&body)), (403, "permission_denied"));
    let (status, tier) = server.post(ADMIN, "/contact/properties", spec);
    assert_eq!(status, 201, "{tier}");
    assert_eq!(tier["options"][1]["label"], "Silver");
    assert!(tier["options"][0]["id"].is_string());
    let (status, again) = server.get(MEMBER, "/contact/properties/tier");
    assert_eq!((status, &again), (200, &tier));
    let (status, body) = server.get(MEMBER, "/contact/properties/nope");
    assert_eq!((status, code(&body)), (404, "not_found"));

    let (status, changed) = server.patch(
        ADMIN,
        "/contact/properties/tier",
        json!({"add_options": [{"slug": "bronze"}], "rename_options": {"gold": "platinum"}}),
    );
    assert_eq!(status, 200, "{changed}");
    let slugs: Vec<&str> = changed["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["platinum", "silver", "bronze"]);

    server.create(MEMBER, "contact", json!({"name": "Ada", "tier": "silver"}));
    let (status, body) = server.delete(ADMIN, "/contact/properties/tier");
    assert_eq!(status / 100, 4, "removal with values is refused: {body}");
    let (status, _) = server.delete(ADMIN, "/contact/properties/tier?force=true");
    assert_eq!(status, 204);
    let (status, _) = server.get(MEMBER, "/contact/properties/tier");
    assert_eq!(status, 404);
}

#[test]
fn the_openapi_document_lists_every_route_the_server_answers() {
    let (_dir, server, _) = start();
    let (status, doc) = server.call(
        None,
        Method::GET,
        &format!("{}/openapi.json", server.root()),
        None,
    );
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let prefix = "/v2/prism/{teamId}/{objectType}";
    let expected = [
        ("", &["get", "post"][..]),
        ("/{id}", &["get", "patch", "delete"]),
        ("/query", &["post"]),
        ("/count", &["get"]),
        ("/by/{slug}/{value}", &["get", "put"]),
        ("/import", &["post"]),
        ("/imports/{jobId}", &["get"]),
        ("/batch/update", &["post"]),
        ("/batch/delete", &["post"]),
        ("/{id}/duplicate", &["post"]),
        ("/{id}/restore", &["post"]),
        ("/{id}/grant", &["get", "put"]),
        ("/properties", &["get", "post"]),
        ("/properties/{slug}", &["get", "patch", "delete"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), expected.len());
    for (suffix, methods) in expected {
        let item = &paths[&format!("{prefix}{suffix}")];
        let mut found: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
            .map(String::as_str)
            .collect();
        found.sort();
        let mut want = methods.to_vec();
        want.sort();
        assert_eq!(found, want, "{suffix}");
        for method in methods {
            let responses = item[method]["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("401") && responses.contains_key("400"),
                "{method} {suffix}"
            );
        }
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{reference}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{reference} does not resolve"
        );
    }
    let schemes = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(schemes["scheme"], "bearer");
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                refs.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}
