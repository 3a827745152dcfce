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
        "added\tbio/enzymes.txt",
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
    let (s, body) = app.upload(&t, "report.docx", b"PK\x03\x04").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["message"].as_str().unwrap().contains(".docx"));
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
    assert_eq!(app.source_events().await, 0);

    let pdf = std::fs::read(format!("{FIXTURES}/cells.pdf")).unwrap();
    let (s, body) = app.upload(&t, "cells.pdf", &pdf).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["source"]["path"], "up/cells.pdf");
    assert_eq!(body["source"]["title"], "Cell Biology Notes");
    assert_eq!(body["source"]["media_type"], "application/pdf");
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

impl TestApp {
    /// Waits until course `id` is in `status`; returns its view.
    async fn course_in(&self, token: &str, id: &str, status: &str) -> Value {
        crate::helpers::eventually(
            &format!("course {id} {status}"),
            std::time::Duration::from_secs(30),
            || async {
                let (_, v) = self.get_json(&format!("/api/v1/courses/{id}"), token).await;
                (v["status"] == status).then_some(v)
            },
        )
        .await
    }
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
    let r = app
        .post("/api/v1/courses/generate", &t)
        .json(&json!({"topic": "Photosynthesis", "num_lessons": 2, "source_filter": "a/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["course_id"]
        .as_str()
        .unwrap()
        .to_owned();
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
    // The course's sources are the union of its lessons'.
    let union = ready["sources"].as_array().unwrap();
    assert!(!union.is_empty());
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
    let r = app
        .post("/api/v1/courses/generate", &t)
        .json(&json!({"topic": "Cell membranes and enzymes", "num_lessons": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["course_id"]
        .as_str()
        .unwrap()
        .to_owned();
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
    let r = app
        .post("/api/v1/courses/generate", &t)
        .json(&json!({"topic": "Cell membranes and enzymes", "num_lessons": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["course_id"]
        .as_str()
        .unwrap()
        .to_owned();
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
}

#[actix_web::test]
async fn without_a_filter_and_with_an_empty_library_the_course_has_no_sources_and_says_so() {
    let app = TestApp::spawn(Overrides::default()).await;
    let t = token(Uuid::new_v4());
    let r = app
        .post("/api/v1/courses/generate", &t)
        .json(&json!({"topic": "Cell membranes", "num_lessons": 2}))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["course_id"]
        .as_str()
        .unwrap()
        .to_owned();
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
