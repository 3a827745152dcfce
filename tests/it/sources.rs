//! The source library: ingest of every format (CLI and HTTP), dedupe and
//! versioning, rejected files storing nothing, tenant isolation, and the
//! projection rebuilt by `replay` equal to its recount from the log.

use coursegen::projections::recount::{difference_sql, recounts};
use coursegen::projections::Projection;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{Overrides, TestApp, JWT_SECRET};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sources");

fn token(user: Uuid) -> String {
    let claims = json!({"sub": user, "exp": chrono::Utc::now().timestamp() + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

impl TestApp {
    /// `POST /api/v1/sources` with a JSON text document.
    async fn add_text(&self, token: &str, path: &str, text: &str) -> (StatusCode, Value) {
        let r = self
            .post("/api/v1/sources", token)
            .json(&json!({"path": path, "text": text}))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// `POST /api/v1/sources` with a multipart form holding one file.
    async fn upload(&self, token: &str, file_name: &str, bytes: &[u8]) -> (StatusCode, Value) {
        let boundary = "coursegen-test-boundary-7d1f";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"prefix\"\r\n\r\nup/\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = self
            .post("/api/v1/sources", token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// How many document events the log holds.
    async fn source_events(&self) -> i64 {
        self.db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM events WHERE event_type LIKE 'Source%'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }
}

/// Asserts the library's tables equal their recount from the log.
async fn assert_library_matches_log(app: &TestApp) {
    let client = app.db.client().await;
    for r in recounts(Projection::Sources) {
        let diff: i64 = client
            .query_one(&difference_sql(&r, ""), &[])
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", r.table))
            .get(0);
        assert_eq!(
            diff, 0,
            "{} differs from its recount by {diff} rows",
            r.table
        );
    }
}

#[actix_web::test]
async fn every_format_is_ingested_with_its_positions_and_html_navigation_stays_out() {
    let app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let out = app.cli(&[
        "sources",
        "add",
        FIXTURES,
        "--prefix",
        "bio",
        "--user",
        &user.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "skips make the exit code 1: {stdout}"
    );
    for line in [
        "added\tbio/cells.pdf (v1, 2 chunks)",
        "added\tbio/membranes.md",
        "added\tbio/photosynthesis.html",
        "added\tbio/enzymes.txt (v1, 1 chunk)",
        "added\tbio/mitosis.docx (v1, 5 chunks)",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from {stdout}");
    }
    assert!(stdout.contains("encrypted.pdf: encrypted PDF"), "{stdout}");
    assert!(
        stdout.contains("make_pdf.py: unsupported type .py"),
        "{stdout}"
    );

    let client = app.db.client().await;
    let rows = client
        .query(
            "SELECT path, page, heading_path, text FROM source_chunks WHERE user_id = $1 ORDER BY path, ordinal",
            &[&user],
        )
        .await
        .unwrap();
    let of = |path: &str| -> Vec<(Option<i32>, Vec<String>, String)> {
        rows.iter()
            .filter(|r| r.get::<_, String>(0) == path)
            .map(|r| (r.get(1), r.get(2), r.get(3)))
            .collect()
    };
    let pdf = of("bio/cells.pdf");
    assert_eq!(
        pdf.iter().map(|c| c.0).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    assert!(pdf[1].2.contains("Ribosomes translate messenger RNA"));
    let md = of("bio/membranes.md");
    assert!(md.iter().any(
        |c| c.1 == ["Cell membranes", "Transport", "Active transport"]
            && c.2.contains("sodium-potassium pump")
    ));
    let docx = of("bio/mitosis.docx");
    assert!(docx
        .iter()
        .any(|c| c.1 == ["Phases", "Prophase"] && c.2.contains("chromatin condenses")));
    assert!(docx
        .iter()
        .any(|c| c.1 == ["Checkpoints"] && c.2.contains("G1/S | cell size and DNA damage")));
    assert!(
        docx.iter().all(|c| !c.2.contains("DELETEDTEXT")),
        "tracked-deleted text was read: {docx:?}"
    );
    let html = of("bio/photosynthesis.html");
    let all: String = html.iter().map(|c| c.2.clone()).collect();
    assert!(all.contains("RuBisCO fixes carbon dioxide"));
    for junk in [
        "SHOPLINK",
        "BANNERTEXT",
        "SIDEBARAD",
        "FOOTERTEXT",
        "TRACKER",
    ] {
        assert!(
            !all.contains(junk),
            "{junk} from the page's chrome is in {all:?}"
        );
    }
    assert!(html
        .iter()
        .any(|c| c.1 == ["Photosynthesis", "Calvin cycle"]));

    // What retrieval finds, per prefix and ranked.
    let t = token(user);
    let (status, hits) = app
        .get_json(
            "/api/v1/sources/search?q=ribosomes%20proteins&prefix=bio/",
            &t,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hits[0]["path"], "bio/cells.pdf");
    assert_eq!(hits[0]["page"], 2);
    let (_, none) = app
        .get_json("/api/v1/sources/search?q=ribosomes&prefix=chem/", &t)
        .await;
    assert_eq!(none, json!([]));
    assert_library_matches_log(&app).await;
}

#[actix_web::test]
async fn same_content_records_nothing_and_changed_content_is_a_new_version() {
    let app = TestApp::spawn(Overrides::default()).await;
    let t = token(Uuid::new_v4());
    let (s, first) = app
        .add_text(
            &t,
            "a/notes.md",
            "# Notes\n\nThe xylem carries water upward.",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["outcome"], "added");
    let (s, again) = app
        .add_text(
            &t,
            "a/notes.md",
            "# Notes\n\nThe xylem carries water upward.",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["outcome"], "unchanged");
    assert_eq!(app.source_events().await, 1);

    let (s, updated) = app
        .add_text(
            &t,
            "a/notes.md",
            "# Notes\n\nThe phloem carries sugars downward.",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(updated["outcome"], "updated");
    assert_eq!(updated["source"]["version"], 2);
    let id = updated["source"]["id"].as_str().unwrap();
    let (_, old) = app.get_json("/api/v1/sources/search?q=xylem", &t).await;
    assert_eq!(old, json!([]), "version 1's chunks are no longer retrieved");
    let (_, new) = app.get_json("/api/v1/sources/search?q=phloem", &t).await;
    assert_eq!(new[0]["version"], 2);
    // Version 1's chunks stay, for the courses that cited them.
    let kept: i64 = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM source_chunks WHERE source_id = $1::text::uuid AND version = 1 AND NOT current",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);

    let (s, doc) = app.get_json(&format!("/api/v1/sources/{id}"), &t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["chunks"][0]["heading_path"], json!(["Notes"]));
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/sources/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (_, gone) = app.get_json("/api/v1/sources/search?q=phloem", &t).await;
    assert_eq!(gone, json!([]));
    let (s, _) = app.get_json(&format!("/api/v1/sources/{id}"), &t).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Added again after the removal: the next version.
    let (s, back) = app
        .add_text(
            &t,
            "a/notes.md",
            "# Notes\n\nThe phloem carries sugars downward.",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(back["source"]["version"], 3);
    assert_library_matches_log(&app).await;

    // A replay rebuilds the same library.
    let out = app.cli(&["replay", "--projection", "sources"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_library_matches_log(&app).await;
    let (_, after) = app.get_json("/api/v1/sources/search?q=phloem", &t).await;
    assert_eq!(after[0]["version"], 3);
}

#[actix_web::test]
async fn rejected_files_get_clear_errors_and_store_nothing() {
    let app = TestApp::spawn(Overrides::default()).await;
    let t = token(Uuid::new_v4());
    let encrypted = std::fs::read(format!("{FIXTURES}/encrypted.pdf")).unwrap();
    let (s, body) = app.upload(&t, "secret.pdf", &encrypted).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("encrypted PDF"));
    let (s, body) = app.upload(&t, "report.odt", b"PK\x03\x04").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["message"].as_str().unwrap().contains(".odt"));
    let (s, body) = app.upload(&t, "report.docx", b"PK\x03\x04").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a readable DOCX file: not a zip archive"),
        "{body}"
    );
    let (s, body) = app
        .upload(&t, "legacy.docx", &[0xd0, 0xcf, 0x11, 0xe0, 0xa1])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("password"),
        "{body}"
    );
    let (s, _) = app.upload(&t, "broken.pdf", b"%PDF-1.4 garbage").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app
        .upload(&t, "latin1.txt", &[0x63, 0x61, 0xe9, 0xff])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.add_text(&t, "../escape.md", "text").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.add_text(&t, "empty.md", "   ").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let big = vec![b'a'; coursegen::sources::MAX_SOURCE_BYTES + 10];
    let (s, _) = app.upload(&t, "big.txt", &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // 100,000 nested elements (600 KB) once overflowed the walk's stack
    // and ended the server.
    let deep = format!(
        "<p>{}deep{}</p>",
        "<b>".repeat(100_000),
        "</b>".repeat(100_000)
    );
    let (s, body) = app.upload(&t, "deep.html", deep.as_bytes()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nested more than 256"),
        "{body}"
    );
    assert_eq!(app.source_events().await, 0);

    let pdf = std::fs::read(format!("{FIXTURES}/cells.pdf")).unwrap();
    let (s, body) = app.upload(&t, "cells.pdf", &pdf).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["source"]["path"], "up/cells.pdf");
    assert_eq!(body["source"]["title"], "Cell Biology Notes");
    assert_eq!(body["source"]["media_type"], "application/pdf");

    let docx = std::fs::read(format!("{FIXTURES}/mitosis.docx")).unwrap();
    let (s, body) = app.upload(&t, "mitosis.docx", &docx).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["source"]["title"], "Mitosis");
    assert_eq!(
        body["source"]["media_type"],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    let (_, hits) = app
        .get_json("/api/v1/sources/search?q=metaphase%20plate", &t)
        .await;
    assert_eq!(hits[0]["path"], "up/mitosis.docx", "{hits}");
    assert_eq!(hits[0]["heading_path"], json!(["Phases", "Metaphase"]));
    assert_eq!(app.source_events().await, 2);
}

/// A document stored while the projection lags is answered from the log:
/// 201 with the row the projection then shows, never a 500; a removal is 204.
#[actix_web::test]
async fn a_write_while_the_projection_lags_is_answered_from_the_log() {
    let app = TestApp::spawn(Overrides::default()).await;
    let t = token(Uuid::new_v4());
    let mut blocker = app.db.client().await;
    let tx = blocker.transaction().await.unwrap();
    // Writers of `sources` wait behind this lock; readers do not.
    tx.batch_execute("LOCK TABLE sources IN SHARE MODE")
        .await
        .unwrap();
    let (s, added) = app
        .add_text(&t, "lag/notes.md", "# Notes\n\nMitochondria make ATP.")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    assert_eq!(added["outcome"], "added");
    assert_eq!(added["source"]["version"], 1);
    tx.commit().await.unwrap();
    let id = added["source"]["id"].as_str().unwrap();
    let shown = crate::helpers::eventually(
        "the projection",
        std::time::Duration::from_secs(30),
        || async {
            let (s, v) = app.get_json(&format!("/api/v1/sources/{id}"), &t).await;
            (s == StatusCode::OK).then_some(v)
        },
    )
    .await;
    for field in added["source"].as_object().unwrap().keys() {
        assert_eq!(added["source"][field], shown[field], "{field}");
    }

    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE sources IN SHARE MODE")
        .await
        .unwrap();
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/sources/{id}")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tx.commit().await.unwrap();
}

#[actix_web::test]
async fn another_users_document_is_a_404_and_never_found() {
    let app = TestApp::spawn(Overrides::default()).await;
    let (alice, bob) = (token(Uuid::new_v4()), token(Uuid::new_v4()));
    let (_, doc) = app
        .add_text(&alice, "private/diary.txt", "Mitochondria are fascinating.")
        .await;
    let id = doc["source"]["id"].as_str().unwrap();
    let (s, body) = app.get_json(&format!("/api/v1/sources/{id}"), &bob).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/sources/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, list) = app.get_json("/api/v1/sources", &bob).await;
    assert_eq!(list, json!([]));
    let (_, hits) = app
        .get_json("/api/v1/sources/search?q=mitochondria", &bob)
        .await;
    assert_eq!(hits, json!([]));
    let (_, mine) = app
        .get_json("/api/v1/sources/search?q=mitochondria", &alice)
        .await;
    assert_eq!(mine[0]["path"], "private/diary.txt");
    let (s, _) = app
        .get_json("/api/v1/sources/search?q=x&limit=0", &alice)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let r = app
        .get("/api/v1/sources", "not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Every chunk a course's lessons cite, as (path, label, chunk id).
async fn citations(
    app: &TestApp,
    token: &str,
    id: &str,
    lessons: u32,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for n in 1..=lessons {
        let (s, lesson) = app
            .get_json(&format!("/api/v1/courses/{id}/lessons/{n}"), token)
            .await;
        assert_eq!(s, StatusCode::OK, "{lesson}");
        for src in lesson["sources"].as_array().unwrap() {
            let c = &src["cited"];
            assert!(
                c.is_object(),
                "an uncited source in a grounded lesson: {src}"
            );
            let label = c["label"].as_str().unwrap().to_owned();
            assert!(
                lesson["content"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("[{label}]")),
                "{label} is listed but not cited inline"
            );
            out.push((
                c["path"].as_str().unwrap().to_owned(),
                label,
                c["chunk_id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[actix_web::test]
async fn a_source_filter_matching_nothing_fails_at_retrieval_and_retry_completes_it_grounded_in_that_prefix_only(
) {
    let app = TestApp::spawn(Overrides::default()).await;
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    let (t, t_other) = (token(user), token(other));
    let id = app
        .requested(
            &t,
            json!({"topic": "Photosynthesis", "num_lessons": 2, "source_filter": "a/"}),
        )
        .await;
    let failed = app.course_in(&t, &id, "FAILED").await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("\"a/\""), "{error}");
    let (_, history) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &t)
        .await;
    let fail = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "CourseFailed")
        .unwrap();
    assert_eq!(fail["payload"]["step"], "retrieval");
    assert_eq!(fail["payload"]["retryable"], true);

    let photosynthesis = "# Photosynthesis\n\n## Light reactions\n\nPhotosynthesis begins when chlorophyll absorbs light. The light reactions split water and release oxygen.\n\n## Calvin cycle\n\nThe Calvin cycle of photosynthesis fixes carbon dioxide into sugar.";
    for (tok, path) in [
        (&t, "a/photosynthesis.md"),
        (&t, "b/photosynthesis.md"),
        (&t_other, "a/photosynthesis.md"),
    ] {
        let (s, body) = app.add_text(tok, path, photosynthesis).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let r = app
        .post(&format!("/api/v1/courses/{id}/retry"), &t)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let ready = app.course_in(&t, &id, "READY").await;

    let cited = citations(&app, &t, &id, 2).await;
    assert!(!cited.is_empty(), "a grounded course cites its documents");
    let mine: Value = app.get_json("/api/v1/sources?prefix=a/", &t).await.1;
    let my_a = mine[0]["id"].as_str().unwrap();
    for (path, _, _) in &cited {
        assert_eq!(path, "a/photosynthesis.md", "cited outside the filter");
    }
    let (_, doc) = app.get_json(&format!("/api/v1/sources/{my_a}"), &t).await;
    let my_chunks: Vec<&str> = doc["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    for (_, _, chunk) in &cited {
        assert!(
            my_chunks.contains(&chunk.as_str()),
            "cited another user's chunk {chunk}"
        );
    }
    // The course's sources are the union of its lessons': each cited chunk
    // once (a label is a lesson's own, so the same chunk may be S1 in one
    // lesson and S3 in another).
    let union = ready["sources"].as_array().unwrap();
    assert!(!union.is_empty());
    let mut in_union: Vec<&str> = union
        .iter()
        .map(|s| s["cited"]["chunk_id"].as_str().unwrap())
        .collect();
    in_union.sort_unstable();
    let mut each: Vec<&str> = cited.iter().map(|(_, _, c)| c.as_str()).collect();
    each.sort_unstable();
    each.dedup();
    assert_eq!(in_union, each, "{union:?}");
    assert!(union
        .iter()
        .all(|s| s["cited"]["path"] == "a/photosynthesis.md"));
    // What was retrieved is in the lesson's event.
    let (_, history) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &t)
        .await;
    let lesson = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "LessonGenerated")
        .unwrap();
    let retrieved = lesson["payload"]["retrieved"].as_array().unwrap();
    assert!(!retrieved.is_empty());
    assert!(retrieved[0]["score_micros"].as_u64().unwrap() > 0);
    assert_eq!(retrieved[0]["version"], 1);
}

#[actix_rt::test]
async fn an_amqp_request_with_a_source_filter_is_grounded_in_that_prefix_or_answered_with_an_error()
{
    use coursegen::domain::{course_id, CourseEvent};
    use coursegen::ingress::amqp::wire::ReplyStatus;

    let _shared = crate::amqp::BROKER.read().await;
    let app = TestApp::spawn(Overrides::default().amqp()).await;
    let user = Uuid::new_v4();
    let t = token(user);
    for (path, text) in [
        (
            "a/volcano.md",
            "# Volcanoes\n\nMagma rises through the crust and erupts as lava from volcanoes.",
        ),
        (
            "b/volcano.md",
            "# Volcanoes\n\nVolcanoes of the b folder erupt lava too, but must never be cited.",
        ),
    ] {
        let (s, body) = app.add_text(&t, path, text).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let (reply_to, mut replies) = app.queues().reply_queue().await;
    let (grounded, nothing) = (Uuid::new_v4(), Uuid::new_v4());
    for (request_id, filter) in [(grounded, "a/"), (nothing, "zzz/")] {
        let body = serde_json::to_vec(&json!({
            "request_id": request_id, "user_id": user, "topic": "Volcanoes",
            "num_lessons": 2, "source_filter": filter,
        }))
        .unwrap();
        app.queues().publish(&body, Some(&reply_to), None).await;
    }
    let mut finals = std::collections::HashMap::new();
    while finals.len() < 2 {
        let (reply, _) = crate::amqp::next_reply(&mut replies).await;
        if reply.status != ReplyStatus::Accepted {
            finals.insert(reply.request_id.clone().unwrap(), reply);
        }
    }
    let ok = &finals[&grounded.to_string()];
    assert_eq!(ok.status, ReplyStatus::Success, "{ok:?}");
    let failed = &finals[&nothing.to_string()];
    assert_eq!(failed.status, ReplyStatus::Error);
    assert!(
        failed.error.as_deref().unwrap().contains("zzz/"),
        "{failed:?}"
    );

    let mut cited = 0;
    for e in app
        .db
        .store
        .read_stream(course_id(user, grounded))
        .await
        .unwrap()
    {
        if let CourseEvent::LessonGenerated(l) = e.to_course_event().unwrap() {
            assert!(!l.retrieved.is_empty());
            for s in &l.sources {
                assert_eq!(s.cited.as_ref().unwrap().path, "a/volcano.md");
                cited += 1;
            }
        }
    }
    assert!(cited > 0);
}

/// Sentences of the fixture documents (those ending in a full stop on their own line).
fn fixture_sentences() -> Vec<String> {
    let mut out = Vec::new();
    for file in ["membranes.md", "enzymes.txt"] {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
        for line in text.lines().map(str::trim) {
            if !line.starts_with('#') && line.ends_with('.') && line.split(' ').count() >= 5 {
                out.extend(
                    line.split_inclusive(". ")
                        .map(|s| s.trim().to_owned())
                        .filter(|s| s.split(' ').count() >= 4),
                );
            }
        }
    }
    out
}

#[actix_web::test]
async fn a_model_citing_an_id_that_was_not_retrieved_is_asked_again_and_the_lesson_keeps_only_the_cited_chunks(
) {
    use crate::fake_llm::{completion, Asked, Exchange, Script};
    // Every lesson's first answer cites [S9], which is never retrieved
    // (a course on these two short documents retrieves at most S1..S4).
    let script = Script {
        dialect: Some(std::sync::Arc::new(|x: &Exchange| {
            let answer = match x.asked {
                Asked::Lesson { .. } if x.repeat == 0 => x.answer.replace("[S1]", "[S9]"),
                _ => x.answer.clone(),
            };
            completion(&answer)
        })),
        ..Script::default()
    };
    let app = TestApp::spawn(Overrides::default().fake_llm(script)).await;
    let user = Uuid::new_v4();
    let t = token(user);
    for (path, file) in [
        ("bio/membranes.md", "membranes.md"),
        ("notes/enzymes.txt", "enzymes.txt"),
    ] {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
        let (s, body) = app.add_text(&t, path, &text).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let id = app
        .requested(
            &t,
            json!({"topic": "Cell membranes and enzymes", "num_lessons": 1}),
        )
        .await;
    let ready = app.course_in(&t, &id, "READY").await;

    let bodies: Vec<Value> = app
        .llm()
        .bodies()
        .into_iter()
        .filter(|b| b.to_string().contains("Write lesson 1."))
        .collect();
    assert_eq!(bodies.len(), 2, "asked once, then once again");
    let outline = app
        .llm()
        .bodies()
        .into_iter()
        .find(|b| b.to_string().contains("Plan a course on: "))
        .unwrap();
    let outline_prompt = outline["messages"][1]["content"].as_str().unwrap();
    assert!(
        outline_prompt.contains("\n[S1] \"") && outline_prompt.contains("sodium-potassium pump"),
        "the outline's prompt shows the chunks: {outline_prompt}"
    );
    let user_text = |b: &Value| b["messages"][1]["content"].as_str().unwrap().to_owned();
    let prompt = user_text(&bodies[0]);
    assert!(prompt.contains("\n[S1] \""), "{prompt}");
    assert!(prompt.contains("Cite them inline by id"), "{prompt}");
    let messages = bodies[1]["messages"].as_array().unwrap();
    let complaint = messages.last().unwrap()["content"].as_str().unwrap();
    assert_eq!(messages.last().unwrap()["role"], "user");
    assert!(
        complaint.contains("[S9]") && complaint.contains("not among the source passages"),
        "{complaint}"
    );
    assert!(messages[messages.len() - 2]["content"]
        .as_str()
        .unwrap()
        .contains("[S9]"));

    let (_, lesson) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/1"), &t)
        .await;
    let content = lesson["content"].as_str().unwrap();
    assert!(
        content.contains("[S1]") && !content.contains("[S9]"),
        "{content}"
    );
    let sources = lesson["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "only the cited chunk: {sources:?}");
    let cited = &sources[0]["cited"];
    assert_eq!(cited["label"], "S1");
    // It is the chunk retrieved as S1, with its document's facts.
    let (_, history) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &t)
        .await;
    let event = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "LessonGenerated")
        .unwrap();
    let retrieved = event["payload"]["retrieved"].as_array().unwrap();
    assert!(retrieved.len() > 1, "{retrieved:?}");
    let s1 = retrieved.iter().find(|r| r["label"] == "S1").unwrap();
    assert_eq!(cited["chunk_id"], s1["chunk_id"]);
    assert_eq!(cited["source_id"], s1["source_id"]);
    assert_eq!(cited["version"], 1);
    let (_, doc) = app
        .get_json(
            &format!("/api/v1/sources/{}", cited["source_id"].as_str().unwrap()),
            &t,
        )
        .await;
    assert_eq!(cited["path"], doc["path"]);
    assert!(sources[0]["title"]
        .as_str()
        .unwrap()
        .contains(doc["title"].as_str().unwrap()));
    let chunk = doc["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cited["chunk_id"])
        .expect("the cited chunk is one of the document's");
    let flat = |v: &Value| {
        v.as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let passage = flat(&cited["passage"]);
    assert!(!passage.is_empty() && flat(&chunk["text"]).contains(&passage));
    assert!(
        cited["heading"].is_string() || cited["page"].is_number(),
        "{cited}"
    );
    // The course's sources are the union of its lessons'.
    assert_eq!(ready["sources"].as_array().unwrap().len(), 1);
}

/// The first words of passage `[S1]` of a prompt, as the prompt shows them.
fn first_words_of_s1(prompt: &str, n: usize) -> Vec<String> {
    let after = prompt.split("\n[S1] \"").nth(1).expect("a passage [S1]");
    let text = after.lines().nth(1).expect("the passage's text").trim();
    text.split_whitespace().take(n).map(str::to_owned).collect()
}

#[actix_web::test]
async fn a_model_quoting_words_that_are_not_in_the_cited_passage_is_asked_again_and_the_lesson_records_the_chunk_s_own_words(
) {
    use crate::fake_llm::{completion, Asked, Exchange, Script};
    // The lesson's first answer quotes, under [S1], words of no passage; the
    // second quotes S1's first words in other case, spacing and punctuation.
    let script = Script {
        dialect: Some(std::sync::Arc::new(|x: &Exchange| {
            let Asked::Lesson { .. } = x.asked else {
                return completion(&x.answer);
            };
            let prompt = x.body["messages"][1]["content"].as_str().unwrap();
            let mut v: Value = serde_json::from_str(&x.answer).unwrap();
            let quote = if x.repeat == 0 {
                "volcanoes erupt on Mars every Tuesday".to_owned()
            } else {
                let words = first_words_of_s1(prompt, 5);
                format!(
                    "  \"{}\n{},  {} {}\" ",
                    words[0].to_uppercase(),
                    words[1],
                    words[2],
                    words[3]
                )
            };
            v["sources"][0]["quote"] = json!(quote);
            completion(&v.to_string())
        })),
        ..Script::default()
    };
    let app = TestApp::spawn(Overrides::default().fake_llm(script)).await;
    let user = Uuid::new_v4();
    let t = token(user);
    let text = std::fs::read_to_string(format!("{FIXTURES}/membranes.md")).unwrap();
    let (s, body) = app.add_text(&t, "bio/membranes.md", &text).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = app
        .requested(&t, json!({"topic": "Cell membranes", "num_lessons": 1}))
        .await;
    app.course_in(&t, &id, "READY").await;

    let bodies: Vec<Value> = app
        .llm()
        .bodies()
        .into_iter()
        .filter(|b| b.to_string().contains("Write lesson 1."))
        .collect();
    assert_eq!(bodies.len(), 2, "asked once, then once again");
    let first_prompt = bodies[0]["messages"][1]["content"].as_str().unwrap();
    assert!(
        first_prompt.contains("copied word for word"),
        "{first_prompt}"
    );
    assert_eq!(
        bodies[0]["response_format"]["json_schema"]["schema"]["properties"]["sources"]["items"]
            ["properties"]["quote"]["type"],
        json!(["string", "null"])
    );
    let messages = bodies[1]["messages"].as_array().unwrap();
    let complaint = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(
        complaint.contains("[S1]")
            && complaint.contains("not in that passage")
            && complaint.contains("volcanoes erupt"),
        "{complaint}"
    );

    let (_, lesson) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/1"), &t)
        .await;
    let sources = lesson["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{sources:?}");
    let cited = &sources[0]["cited"];
    assert_eq!(cited["label"], "S1");
    // The passage recorded is the chunk's own text over the quoted words:
    // their case and punctuation, not the model's.
    let words = first_words_of_s1(first_prompt, 4);
    let (_, doc) = app
        .get_json(
            &format!("/api/v1/sources/{}", cited["source_id"].as_str().unwrap()),
            &t,
        )
        .await;
    let chunk = doc["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cited["chunk_id"])
        .expect("the cited chunk is one of the document's");
    let chunk_text = chunk["text"].as_str().unwrap();
    let passage = cited["passage"].as_str().unwrap();
    let expected = words.join(" ");
    let expected = expected.trim_end_matches(|c: char| !c.is_alphanumeric());
    assert_eq!(passage, expected, "chunk: {chunk_text}");
    assert!(
        chunk_text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(passage),
        "{passage:?} is not the chunk's text {chunk_text:?}"
    );
}

#[actix_web::test]
async fn offline_from_a_folder_of_documents_without_a_filter_the_lessons_quote_them_and_quiz_their_facts(
) {
    let app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let t = token(user);
    let out = app.cli(&["sources", "add", FIXTURES, "--user", &user.to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("added\tmembranes.md"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let id = app
        .requested(
            &t,
            json!({"topic": "Cell membranes and enzymes", "num_lessons": 2}),
        )
        .await;
    app.course_in(&t, &id, "READY").await;
    let cited = citations(&app, &t, &id, 2).await;
    assert!(!cited.is_empty(), "no filter: the whole library is used");

    let sentences = fixture_sentences();
    let (mut quoted, mut cloze) = (0, 0);
    for n in 1..=2 {
        let (_, lesson) = app
            .get_json(&format!("/api/v1/courses/{id}/lessons/{n}"), &t)
            .await;
        let content = lesson["content"].as_str().unwrap();
        quoted += sentences.iter().filter(|s| content.contains(*s)).count();
        for q in lesson["quiz"].as_array().unwrap() {
            let question = q["question"].as_str().unwrap();
            if !question.contains("_____") {
                continue;
            }
            let answer = q["options"][q["answer_index"].as_u64().unwrap() as usize]
                .as_str()
                .unwrap();
            let filled = question.split('"').nth(1).unwrap().replace("_____", answer);
            let documents: String = ["membranes.md", "enzymes.txt", "photosynthesis.html"]
                .iter()
                .map(|f| std::fs::read_to_string(format!("{FIXTURES}/{f}")).unwrap())
                .chain(
                    coursegen::sources::docx::extract(
                        &std::fs::read(format!("{FIXTURES}/mitosis.docx")).unwrap(),
                    )
                    .unwrap()
                    .sections
                    .into_iter()
                    .map(|s| s.text),
                )
                .collect::<Vec<_>>()
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let pdf_text = std::process::Command::new("pdftotext")
                .args([&format!("{FIXTURES}/cells.pdf"), "-"])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            assert!(
                documents.contains(&filled) || pdf_text.contains(&filled),
                "quiz sentence {filled:?} is not from the documents"
            );
            assert!(question.contains("[S"), "{question}");
            cloze += 1;
        }
    }
    assert!(quoted >= 2, "the lessons quote the documents' sentences");
    assert!(cloze >= 3, "the quizzes ask about the documents' facts");

    // The pages: each citation links to its passage, shown as the document
    // has it; the course lists each document once; narration reads no ids.
    let pages = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::COOKIE,
                format!("coursegen_session={t}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let html = |path: String| {
        let pages = pages.clone();
        async move {
            let r = pages.get(path).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.unwrap()
        }
    };
    let lesson = html(app.url(&format!("/courses/{id}/lessons/1"))).await;
    let (_, json) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/1"), &t)
        .await;
    for src in json["sources"].as_array().unwrap() {
        let label = src["cited"]["label"].as_str().unwrap();
        assert!(
            lesson.contains(&format!("href=\"#cite-{label}\"")),
            "no link to {label}"
        );
        assert!(
            lesson.contains(&format!("id=\"cite-{label}\"")),
            "no anchor {label}"
        );
        let passage = src["cited"]["passage"].as_str().unwrap();
        let shown = passage
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;");
        assert!(lesson.contains(&shown), "passage {passage:?} not shown");
    }
    let course = html(app.url(&format!("/courses/{id}"))).await;
    let (_, view) = app.get_json(&format!("/api/v1/courses/{id}"), &t).await;
    let used = course
        .split("Sources used")
        .nth(1)
        .unwrap()
        .split("</ul>")
        .next()
        .unwrap();
    for src in view["sources"].as_array().unwrap() {
        let title = src["title"].as_str().unwrap();
        assert_eq!(
            used.matches(&format!("<li>{title} ")).count(),
            1,
            "{title} in {used}"
        );
    }
    let (s, cues) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/1/subtitles"), &t)
        .await;
    assert_eq!(s, StatusCode::OK, "{cues}");
    assert!(!cues.to_string().contains("S1"), "{cues}");
}

#[actix_web::test]
async fn without_a_filter_and_with_an_empty_library_the_course_has_no_sources_and_says_so() {
    let app = TestApp::spawn(Overrides::default()).await;
    let t = token(Uuid::new_v4());
    let id = app
        .requested(&t, json!({"topic": "Cell membranes", "num_lessons": 2}))
        .await;
    let ready = app.course_in(&t, &id, "READY").await;
    for n in 1..=2 {
        let (_, lesson) = app
            .get_json(&format!("/api/v1/courses/{id}/lessons/{n}"), &t)
            .await;
        assert!(!lesson["content"].as_str().unwrap().contains("[S1]"));
        for s in lesson["sources"].as_array().unwrap() {
            assert!(s["cited"].is_null(), "{s}");
            assert!(s["url"].is_null(), "no invented URL: {s}");
            assert!(
                s["title"]
                    .as_str()
                    .unwrap()
                    .contains("not grounded in sources"),
                "{s}"
            );
        }
    }
    assert!(ready["sources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["cited"].is_null()));
    let (_, history) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &t)
        .await;
    for e in history.as_array().unwrap() {
        if e["event_type"] == "LessonGenerated" {
            assert_eq!(
                e["payload"].get("retrieved").cloned().unwrap_or(json!([])),
                json!([])
            );
        }
    }
}

/// A source library that cannot be searched (the database restarting)
/// delays the step, as a failed append does; it does not fail the course.
/// Found by the chaos soak: a `pg_ctl restart` during a retrieval left a
/// course FAILED at `retrieval` ("the source library could not be searched").
#[actix_web::test]
async fn a_library_out_of_reach_delays_the_step_instead_of_failing_the_course() {
    let app = TestApp::spawn(Overrides::default()).await;
    let t = token(Uuid::new_v4());
    let client = app.db.client().await;
    client
        .batch_execute("ALTER TABLE sources RENAME TO sources_out_of_reach")
        .await
        .unwrap();
    let id = app
        .requested(&t, json!({"topic": "Photosynthesis", "num_lessons": 1}))
        .await;
    app.course_in(&t, &id, "GENERATING").await;
    // Several retrievals fail meanwhile (the first retry comes after 200 ms).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, history) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &t)
        .await;
    let types: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(!types.contains(&"CourseFailed"), "{types:?}");
    client
        .batch_execute("ALTER TABLE sources_out_of_reach RENAME TO sources")
        .await
        .unwrap();
    app.course_in(&t, &id, "READY").await;
}

/// A deterministic embedding: one dimension per concept, counting the
/// words of that concept (energy, plants), and a small constant one so that
/// no vector is zero. "powerhouse" is nearest the mitochondria, with which
/// it shares no word.
fn concept_vector(text: &str) -> Vec<f32> {
    const ENERGY: &[&str] = &["mitochondria", "atp", "respiration", "powerhouse"];
    const PLANTS: &[&str] = &["chlorophyll", "sunlight", "leaf", "photosynthesis"];
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .collect();
    let count = |set: &[&str]| words.iter().filter(|w| set.contains(&w.as_str())).count() as f32;
    vec![count(ENERGY), count(PLANTS), 0.1]
}

/// An OpenAI-compatible `/v1/embeddings` answering [`concept_vector`]s, and
/// 503 for any input containing "overloaded".
async fn fake_embeddings() -> wiremock::MockServer {
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(body_string_contains("overloaded"))
        .respond_with(ResponseTemplate::new(503).set_body_string("model overloaded"))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(|r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["model"], "test-embed");
            let data: Vec<Value> = body["input"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"index": i, "embedding": concept_vector(t.as_str().unwrap())}))
                .collect();
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": data}))
        })
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

impl TestApp {
    /// How many vectors `chunk_embeddings` holds, and how many current
    /// chunks find theirs by the hash of their text.
    async fn vectors(&self) -> (i64, i64) {
        let row = self
            .db
            .client()
            .await
            .query_one(
                "SELECT (SELECT count(*) FROM chunk_embeddings),
                        (SELECT count(*) FROM source_chunks c JOIN chunk_embeddings e
                           ON e.text_hash = sha256(convert_to(c.text, 'UTF8'))
                         WHERE c.current)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }
}

const MITOCHONDRIA: &str = "Mitochondria produce ATP through cellular respiration.";
const CHLOROPHYLL: &str = "Chlorophyll absorbs sunlight in the leaf.";

#[actix_web::test]
async fn without_embeddings_configured_nothing_is_embedded_and_a_query_sharing_no_word_finds_nothing(
) {
    let app = TestApp::spawn(Overrides::default()).await;
    let t = token(Uuid::new_v4());
    for (path, text) in [("bio/a.txt", MITOCHONDRIA), ("bio/b.txt", CHLOROPHYLL)] {
        let (s, body) = app.add_text(&t, path, text).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    assert_eq!(app.vectors().await, (0, 0));
    let (_, hits) = app
        .get_json("/api/v1/sources/search?q=powerhouse", &t)
        .await;
    assert_eq!(hits, json!([]));
    let (_, hits) = app
        .get_json("/api/v1/sources/search?q=chlorophyll", &t)
        .await;
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    assert!(hits[0]["score"].as_f64().unwrap() > 0.0);
}

#[actix_web::test]
async fn with_embeddings_vectors_are_stored_at_ingest_and_fused_with_full_text_in_search_and_in_a_course(
) {
    let embeddings = fake_embeddings().await;
    let app = TestApp::spawn(
        Overrides::default()
            .set("--embeddings-model", "test-embed")
            .set("--embeddings-base-url", format!("{}/v1", embeddings.uri())),
    )
    .await;
    let requests = || async { embeddings.received_requests().await.unwrap().len() };
    let user = Uuid::new_v4();
    let t = token(user);
    let (s, a) = app.add_text(&t, "bio/a.txt", MITOCHONDRIA).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, _) = app.add_text(&t, "bio/b.txt", CHLOROPHYLL).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(app.vectors().await, (2, 2));
    assert_eq!(requests().await, 2);
    // The same text again, at another path: nothing more is embedded.
    let (s, _) = app.add_text(&t, "copy/a.txt", MITOCHONDRIA).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(app.vectors().await, (2, 3));
    assert_eq!(requests().await, 2);

    // The endpoint failing: a clear 503 and nothing stored.
    let events = app.source_events().await;
    let (s, body) = app
        .add_text(&t, "bio/c.txt", "The servers are overloaded today.")
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("503: model overloaded") && message.contains("nothing was stored"),
        "{message}"
    );
    assert_eq!(app.source_events().await, events);
    assert_eq!(app.vectors().await, (2, 3));

    // Found by its vector alone: full text has no "powerhouse".
    let (s, hits) = app
        .get_json("/api/v1/sources/search?q=powerhouse&prefix=bio/", &t)
        .await;
    assert_eq!(s, StatusCode::OK, "{hits}");
    assert_eq!(hits[0]["path"], "bio/a.txt", "{hits}");
    assert!((hits[0]["score"].as_f64().unwrap() - 1.0 / 61.0).abs() < 1e-9);
    // Full text and vectors agreeing: first in both.
    let (_, hits) = app
        .get_json("/api/v1/sources/search?q=chlorophyll", &t)
        .await;
    assert_eq!(hits[0]["path"], "bio/b.txt", "{hits}");
    assert!((hits[0]["score"].as_f64().unwrap() - 2.0 / 61.0).abs() < 1e-9);
    // Another user's chunks are no candidates.
    let (_, hits) = app
        .get_json(
            "/api/v1/sources/search?q=powerhouse",
            &token(Uuid::new_v4()),
        )
        .await;
    assert_eq!(hits, json!([]));
    // A query the endpoint cannot embed: 503, not full text alone.
    let (s, body) = app
        .get_json("/api/v1/sources/search?q=overloaded", &t)
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // A course's outline retrieves the chunk by its vector, and its event
    // records the fused score.
    let a_id = a["source"]["id"].as_str().unwrap();
    let (_, doc) = app.get_json(&format!("/api/v1/sources/{a_id}"), &t).await;
    let chunk_id = doc["chunks"][0]["id"].clone();
    let id = app
        .requested(
            &t,
            json!({"topic": "The cellular powerhouse", "num_lessons": 1, "source_filter": "bio/"}),
        )
        .await;
    app.course_in(&t, &id, "READY").await;
    let (_, history) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &t)
        .await;
    let outline = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "OutlineGenerated")
        .unwrap();
    let retrieved = &outline["payload"]["retrieved"];
    assert_eq!(retrieved[0]["chunk_id"], chunk_id, "{retrieved}");
    // "cellular" is in the chunk too: first by full text and by vector.
    assert_eq!(retrieved[0]["score_micros"], 32_787, "{retrieved}");

    // `coursegen sources add` with the same settings: a file's vectors are
    // stored; a file that cannot be embedded is skipped with the reason.
    let dir = std::env::temp_dir().join(format!("coursegen-test-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("leaf.txt"), "Photosynthesis needs sunlight.").unwrap();
    std::fs::write(dir.join("busy.txt"), "The endpoint is overloaded.").unwrap();
    let args: Vec<String> = [
        "sources",
        "add",
        dir.to_str().unwrap(),
        "--prefix",
        "cli/",
        "--user",
        &user.to_string(),
        "--embeddings-model",
        "test-embed",
        "--embeddings-base-url",
        &format!("{}/v1", embeddings.uri()),
    ]
    .map(str::to_owned)
    .into();
    // Off this thread: the server under test runs on it, and the command
    // waits for the server's projector to show what it added.
    let db_url = app.db.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coursegen"))
            .args(&args)
            .env("DATABASE_URL", db_url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let report = format!("{stdout}{stderr}");
    assert!(report.contains("cli/leaf.txt"), "{report}");
    assert!(report.contains("503: model overloaded"), "{report}");
    assert_eq!(app.vectors().await, (3, 4));

    // A replay rebuilds the library from the log; the vectors stay and no
    // text is embedded again.
    let before = requests().await;
    let out = app.cli(&["replay", "--projection", "sources"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.vectors().await, (3, 4));
    assert_eq!(requests().await, before);
}

/// The search index's keys of a chunk, as `projections/0013_sources_search.sql`
/// first defined them (the index was built with this body).
const CHUNK_KEYS_0013: &str = "SELECT array_append(
        ARRAY(SELECT $1::uuid::text || ':' || left($2::text, p)
              FROM generate_series(0, length($2::text)) AS p
              WHERE p = 0 OR substr($2::text, p, 1) = '/'),
        '~' || get_byte(uuid_send($3::uuid), 15))";

#[actix_web::test]
async fn the_search_keys_of_a_chunk_are_those_its_index_was_built_with() {
    let db = crate::helpers::TestDb::new().await;
    let client = db.client().await;
    let user = Uuid::new_v4();
    for path in [
        "a.md",
        "a/b/c.md",
        "f3/doc00012.md",
        "ünï/cödé/ße.md",
        "a//b/",
        "/lead",
        "",
        "deep/er/and/deeper/still/x.pdf",
    ] {
        let id = Uuid::new_v4();
        let now: Vec<String> = client
            .query_one(
                "SELECT coursegen_chunk_keys($1, $2, $3)",
                &[&user, &path, &id],
            )
            .await
            .unwrap()
            .get(0);
        let then: Vec<String> = client
            .query_one(CHUNK_KEYS_0013, &[&user, &path, &id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(now, then, "{path:?}");
        assert_eq!(
            now.len(),
            path.matches('/').count() + 2,
            "{path:?}: {now:?}"
        );
    }
}

/// Each chunk of the log's document versions: whether its search vector is
/// stored, and whether by the transaction that appended its event.
async fn stored_vectors(app: &TestApp) -> (i64, i64, i64) {
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*), count(v.chunk_id),
                    count(*) FILTER (WHERE v.xmin = e.transaction_id::xid)
             FROM events e
             CROSS JOIN LATERAL jsonb_to_recordset(e.payload->'chunks') AS c(id uuid)
             LEFT JOIN chunk_search_vectors v ON v.chunk_id = c.id
             WHERE e.event_type IN ('SourceAdded', 'SourceUpdated')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Every chunk's id and search vector, by id.
async fn chunk_vectors(app: &TestApp) -> Vec<(Uuid, String)> {
    app.db
        .client()
        .await
        .query("SELECT id, tsv::text FROM source_chunks ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[actix_web::test]
async fn each_chunk_s_search_vector_is_stored_by_its_event_s_transaction_and_computed_by_the_projector_when_absent(
) {
    use coursegen::domain::sources::{chunk_id, source_id};
    let app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let t = token(user);

    // Both ingest paths store every chunk's vector in the appending
    // transaction; the projection takes it as it is.
    let (s, added) = app
        .add_text(
            &t,
            "v/a.md",
            "# Roots\n\n## Uptake\n\nRoot hairs take up water and minerals from the soil.",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    // Off this thread: the server under test runs on it, and the command
    // waits for the server's projector to show what it added.
    let (db_url, user_arg) = (app.db.url(), user.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coursegen"))
            .args(["sources", "add", &format!("{FIXTURES}/membranes.md")])
            .args(["--prefix", "v", "--user", &user_arg])
            .env("DATABASE_URL", db_url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (chunks, stored, by_event) = stored_vectors(&app).await;
    assert!(chunks >= 2, "{chunks}");
    assert_eq!((stored, by_event), (chunks, chunks));
    let client = app.db.client().await;
    let differing: i64 = client
        .query_one(
            "SELECT count(*) FROM source_chunks s
             LEFT JOIN chunk_search_vectors v ON v.chunk_id = s.id
             WHERE v.tsv IS DISTINCT FROM s.tsv",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(differing, 0);
    assert_library_matches_log(&app).await;
    let before = chunk_vectors(&app).await;

    // A vector missing when the live projector applies the event (deleted
    // while the projector waits behind a lock) is computed by it: the
    // library still equals its recount.
    let mut blocker = app.db.client().await;
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE sources IN SHARE MODE")
        .await
        .unwrap();
    let (s, lagging) = app
        .add_text(&t, "v/b.md", "# Leaves\n\nStomata open in the light.")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{lagging}");
    let b = source_id(user, "v/b.md");
    let deleted = client
        .execute(
            "DELETE FROM chunk_search_vectors WHERE chunk_id = $1",
            &[&chunk_id(b, 1, 0)],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    tx.commit().await.unwrap();
    crate::helpers::eventually(
        "the lagging document projected",
        std::time::Duration::from_secs(30),
        || async {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM source_chunks WHERE source_id = $1",
                    &[&b],
                )
                .await
                .unwrap()
                .get(0);
            (n > 0).then_some(())
        },
    )
    .await;
    let (_, hits) = app.get_json("/api/v1/sources/search?q=stomata", &t).await;
    assert_eq!(hits[0]["path"], "v/b.md", "{hits}");
    assert_library_matches_log(&app).await;

    // The projector takes the stored vector rather than computing its own
    // (one planted before the document's ingest stays: a chunk id fixes
    // its vector, so the one stored is taken as it).
    let planted = chunk_id(source_id(user, "v/planted.md"), 1, 0);
    client
        .execute(
            "INSERT INTO chunk_search_vectors (chunk_id, tsv) VALUES ($1, 'planted')",
            &[&planted],
        )
        .await
        .unwrap();
    let (s, _) = app
        .add_text(&t, "v/planted.md", "# Stems\n\nStems carry sap.")
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let projected = crate::helpers::eventually(
        "the planted chunk projected",
        std::time::Duration::from_secs(30),
        || async {
            client
                .query_opt(
                    "SELECT tsv::text FROM source_chunks WHERE id = $1",
                    &[&planted],
                )
                .await
                .unwrap()
                .map(|r| r.get::<_, String>(0))
        },
    )
    .await;
    assert_eq!(projected, "'planted'");

    client
        .execute(
            "DELETE FROM chunk_search_vectors WHERE chunk_id = $1",
            &[&planted],
        )
        .await
        .unwrap();

    // A log restored without the table: a replay computes every vector,
    // the same as those stored at ingest.
    client
        .batch_execute("DELETE FROM chunk_search_vectors")
        .await
        .unwrap();
    let out = app.cli(&["replay", "--projection", "sources"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_library_matches_log(&app).await;
    let after = chunk_vectors(&app).await;
    for chunk in &before {
        assert!(after.contains(chunk), "{chunk:?} changed");
    }
    assert_eq!(after.len(), before.len() + 2);
}

/// Waiting on the embeddings endpoint holds no database connection: with a
/// pool of one, a query gets it while `store_vectors` waits on a slow
/// endpoint (a big document means hundreds of such requests).
#[tokio::test]
async fn waiting_on_the_embeddings_endpoint_holds_no_database_connection() {
    use std::time::Duration;

    use coursegen::sources::embeddings::{Embedder, EmbeddingsSettings};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let db = crate::helpers::TestDb::with_pool(1).await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(3))
                .set_body_json(
                    json!({"object": "list", "data": [{"index": 0, "embedding": [1.0, 0.5]}]}),
                ),
        )
        .mount(&server)
        .await;
    let embedder = Embedder::new(EmbeddingsSettings {
        model: "test-embed".into(),
        base_url: format!("{}/v1", server.uri()),
        api_key: None,
    });
    let pool = db.store.pool().clone();
    let storing = tokio::spawn(async move {
        coursegen::sources::semantic::store_vectors(&pool, &embedder, &["a passage"]).await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.received_requests().await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the endpoint was never asked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The endpoint answers 3 s after it was asked: a connection held
    // through the wait would keep this one waiting about as long.
    let client = tokio::time::timeout(Duration::from_millis(1500), db.store.pool().get())
        .await
        .expect("the pool's one connection, while the endpoint is slow")
        .unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    drop(client);
    assert_eq!(storing.await.unwrap().unwrap(), 1, "the vector is stored");
}

/// The candidates a search ranks come from statistics over every library:
/// a word they list nowhere counts as rare, so "mitochondria or cell"
/// ranks only chunks with "mitochondria". In a library of 2,000 chunks
/// about cells and none about mitochondria, the search still finds cells.
#[actix_web::test]
async fn a_word_rare_on_the_server_but_absent_here_does_not_hide_the_other_words_matches() {
    let app = TestApp::spawn(Overrides::default()).await;
    let t = token(Uuid::new_v4());
    let paragraph = |i: usize| {
        format!(
            "Paragraph {i}. Every living cell keeps its contents apart with a membrane, and a \
             cell grows, copies its genes and divides. {}\n\n",
            "The cell wall of a plant cell is rigid; an animal cell has none. ".repeat(12)
        )
    };
    let text: String = (0..2_000).map(paragraph).collect();
    let (s, body) = app.upload(&t, "big.md", text.as_bytes()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let chunks = body["source"]["chunks"].as_i64().unwrap_or(0);
    let client = app.db.client().await;
    crate::helpers::eventually(
        "the chunks projected",
        std::time::Duration::from_secs(60),
        || {
            let client = &client;
            async move {
                let n: i64 = client
                    .query_one("SELECT count(*) FROM source_chunks", &[])
                    .await
                    .unwrap()
                    .get(0);
                (n >= 2_000 && (chunks == 0 || n == chunks)).then_some(())
            }
        },
    )
    .await;
    client.batch_execute("ANALYZE source_chunks").await.unwrap();
    let (s, hits) = app
        .get_json(
            "/api/v1/sources/search?q=mitochondria%20or%20cell&limit=5",
            &t,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{hits}");
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 5, "{hits:?}");
    assert!(hits.iter().all(|h| h["path"] == "up/big.md"));
}
