//! The HTTP API end to end: the real `Application` (scheduler, projections,
//! HTTP) bound to port 0 on a database of its own, driven with reqwest.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{Overrides, TestApp, JWT_SECRET as SECRET};
use crate::fake_llm::{error, Script};
use crate::helpers::eventually;

/// HTTP calls the tests here repeat.
impl TestApp {
    pub(crate) async fn generate(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .post("/api/v1/courses/generate", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// Requests a course and returns its id.
    pub(crate) async fn course(&self, token: &str, topic: &str) -> String {
        self.requested(token, json!({"topic": topic, "num_lessons": 2}))
            .await
    }

    /// Sends a course request that must be accepted; returns the course id.
    pub(crate) async fn requested(&self, token: &str, request: Value) -> String {
        let (status, body) = self.generate(token, request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["course_id"].as_str().unwrap().to_owned()
    }

    /// Waits until course `id` is in `status`; returns its view.
    pub(crate) async fn course_in(&self, token: &str, id: &str, status: &str) -> Value {
        eventually(
            &format!("course {id} {status}"),
            Duration::from_secs(60),
            || async {
                let (_, v) = self.get_json(&format!("/api/v1/courses/{id}"), token).await;
                (v["status"] == status).then_some(v)
            },
        )
        .await
    }

    /// Waits until the course's projection says READY or FAILED.
    pub(crate) async fn finished(&self, token: &str, id: &str) -> Value {
        eventually("the course to finish", Duration::from_secs(30), || async {
            let (_, body) = self.get_json(&format!("/api/v1/courses/{id}"), token).await;
            matches!(body["status"].as_str(), Some("READY" | "FAILED")).then_some(body)
        })
        .await
    }
}

fn token_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn exp() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

pub(crate) fn user_token(user: Uuid) -> String {
    token_with(json!({"sub": user, "exp": exp()}), SECRET)
}

fn admin_token(user: Uuid) -> String {
    token_with(json!({"sub": user, "role": "admin", "exp": exp()}), SECRET)
}

/// The titles of a course's lessons, in order.
fn lesson_titles(course: &Value) -> Vec<&str> {
    course["lessons"]
        .as_array()
        .unwrap_or_else(|| panic!("a lesson list in {course}"))
        .iter()
        .map(|l| l["title"].as_str().unwrap())
        .collect()
}

/// A timestamp of the API (RFC 3339).
fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("a timestamp, not {value}"))
        .with_timezone(&chrono::Utc)
}

/// The recording time of the last event of `event_type` in a history.
fn recorded_at(events: &Value, event_type: &str) -> chrono::DateTime<chrono::Utc> {
    let event = events
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["event_type"] == event_type)
        .unwrap_or_else(|| panic!("no {event_type} in {events}"));
    time(&event["recorded_at"])
}

pub(crate) fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[actix_rt::test]
async fn generate_answers_202_with_location_and_the_course_is_readable_at_once() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let token = user_token(user);
    let r = app
        .post("/api/v1/courses/generate", &token)
        .json(&json!({"topic": "Photosynthesis", "num_lessons": 3, "grade_level": "Grade 8"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    let id = body["course_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/courses/{id}"));
    assert_eq!(body["user_id"], user.to_string());
    assert_eq!(body["topic"], "Photosynthesis");
    assert_eq!(body["total_lessons"], 3);
    // Generation may have begun by the time the request is read back.
    assert!(
        matches!(
            body["status"].as_str(),
            Some("QUEUED" | "GENERATING" | "READY")
        ),
        "{body}"
    );

    let (status, course) = app.get_json(&location, &token).await;
    assert_eq!(status, StatusCode::OK, "{course}");
    assert_eq!(course["course_id"], id);
    // The lessons the offline generator plans for the topic, listed from the
    // outline on: none before it, all three after.
    let planned = [
        "What is Photosynthesis? A first look",
        "The building blocks of Photosynthesis",
        "Bringing it together: a project on Photosynthesis",
    ];
    let at_once = lesson_titles(&course);
    assert!(at_once.is_empty() || at_once == planned, "{course}");
    let course = app.finished(&token, &id).await;
    assert_eq!(lesson_titles(&course), planned);
    app.stop().await;
}

#[actix_rt::test]
async fn a_repeated_request_returns_the_same_course() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let request_id = Uuid::new_v4().to_string();
    let body = json!({"request_id": request_id, "topic": "Volcanoes"});
    let (first, a) = app.generate(&token, body.clone()).await;
    let (second, b) = app.generate(&token, body).await;
    assert_eq!(first, StatusCode::ACCEPTED);
    assert_eq!(second, StatusCode::OK);
    assert_eq!(a["course_id"], b["course_id"]);
    assert_eq!(b["request_id"], request_id);

    // The same request id for a different request is a conflict.
    let (status, body) = app
        .generate(
            &token,
            json!({"request_id": request_id, "topic": "Glaciers"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");

    let (_, page) = app.get_json("/api/v1/courses", &token).await;
    assert_eq!(page["total"], 1);
    app.stop().await;
}

#[actix_rt::test]
async fn generate_rejects_bad_bodies_with_json_errors() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let cases = [
        (json!({}), "invalid_request"),
        (json!({"topic": "  "}), "invalid_request"),
        (json!({"topic": "x", "num_lessons": 0}), "invalid_request"),
        (json!({"topic": "x", "num_lessons": 21}), "invalid_request"),
        (
            json!({"topic": "x", "request_id": "not-a-uuid"}),
            "invalid_request",
        ),
        (json!({"topic": "x", "language": "??"}), "invalid_request"),
        (
            json!({"topic": "x", "source_filter": "../etc"}),
            "invalid_request",
        ),
        (json!({"topic": "x", "owner": "me"}), "invalid_request"),
        (
            json!({"topic": "x", "num_lessons": "four"}),
            "invalid_request",
        ),
        (json!(["topic"]), "invalid_request"),
    ];
    for (body, code) in cases {
        let (status, answer) = app.generate(&token, body.clone()).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, code);
    }

    let send = |body: Vec<u8>, content_type: &'static str| {
        app.post("/api/v1/courses/generate", &token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = send(b"{not json".to_vec(), "application/json")
        .await
        .unwrap();
    let status = r.status();
    assert_error(
        status,
        &r.json().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );

    let r = send(br#"{"topic":"x"}"#.to_vec(), "text/plain")
        .await
        .unwrap();
    let status = r.status();
    assert_error(
        status,
        &r.json().await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let big = format!(r#"{{"topic":"{}"}}"#, "x".repeat(20_000));
    let r = send(big.into_bytes(), "application/json").await.unwrap();
    let status = r.status();
    assert_error(
        status,
        &r.json().await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    app.stop().await;
}

#[actix_rt::test]
async fn requests_without_a_valid_token_are_401() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let bad_tokens = [
        "garbage".to_owned(),
        token_with(json!({"sub": user, "exp": exp()}), "another secret"),
        token_with(json!({"sub": "not-a-uuid", "exp": exp()}), SECRET),
        token_with(json!({"sub": user, "exp": 1_000_000}), SECRET),
        token_with(json!({"sub": user}), SECRET),
    ];
    for token in &bad_tokens {
        let (status, body) = app.get_json("/api/v1/courses", token).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let r = app
        .client
        .get(app.url("/api/v1/courses"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = app
        .client
        .get(app.url("/api/v1/courses"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .post(app.url("/api/v1/courses/generate"))
        .json(&json!({"topic": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[actix_rt::test]
async fn another_users_course_is_404_everywhere_and_admins_see_all() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let (a, b) = (user_token(alice), user_token(bob));
    let id = app.course(&a, "Alice's algebra").await;
    app.course(&b, "Bob's biology").await;

    for path in [
        format!("/api/v1/courses/{id}"),
        format!("/api/v1/courses/{id}/lessons/1"),
        format!("/api/v1/courses/{id}/events"),
        format!("/api/v1/courses/{id}/progress"),
        format!("/api/v1/jobs/{id}"),
    ] {
        let (status, body) = app.get_json(&path, &b).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/courses/{id}")))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    for action in ["restore", "retry"] {
        let r = app
            .post(&format!("/api/v1/courses/{id}/{action}"), &b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    let (_, page) = app.get_json("/api/v1/courses", &b).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["user_id"], bob.to_string());
    let (status, body) = app
        .get_json(&format!("/api/v1/courses?user={alice}"), &b)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    let admin = admin_token(Uuid::new_v4());
    let (_, page) = app.get_json("/api/v1/courses", &admin).await;
    assert_eq!(page["total"], 2);
    let (_, page) = app
        .get_json(&format!("/api/v1/courses?user={alice}"), &admin)
        .await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["course_id"], id);
    let (status, _) = app.get_json(&format!("/api/v1/courses/{id}"), &admin).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[actix_rt::test]
async fn pagination_has_a_total_and_rejects_bad_pages() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.course(&token, &format!("Topic number {i}")).await);
    }
    let mut seen = Vec::new();
    for (page, len) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        let (status, body) = app
            .get_json(
                &format!("/api/v1/courses?page={page}&per_page=2&sort=created_at"),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["total"], 5);
        assert_eq!(body["page"], page);
        assert_eq!(body["per_page"], 2);
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), len);
        seen.extend(
            items
                .iter()
                .map(|c| c["course_id"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(seen, ids, "oldest first, each course once");

    let (_, newest) = app.get_json("/api/v1/courses?per_page=1", &token).await;
    assert_eq!(newest["items"][0]["course_id"], ids[4]);
    let (_, all) = app.get_json("/api/v1/courses?per_page=100", &token).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);

    for query in [
        "page=0",
        "page=-1",
        "page=abc",
        "page=99999999999999999999",
        "per_page=0",
        "per_page=101",
        "sort=colour",
        "status=DONE",
        "created_after=yesterday",
        "user=not-a-uuid",
        "unknown=1",
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/courses?{query}"), &token)
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn search_status_and_date_filters_find_the_right_courses() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let volcano = app.course(&token, "Volcanoes and plate tectonics").await;
    let cells = app.course(&token, "Cell division").await;
    app.finished(&token, &volcano).await;
    app.finished(&token, &cells).await;

    let search = |q: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            let (status, body) = app.get_json(&format!("/api/v1/courses?q={q}"), token).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["course_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("volcanoes").await, vec![volcano.clone()]);
    assert_eq!(search("tectonics%20-cell").await, vec![volcano.clone()]);
    assert_eq!(search("cell").await, vec![cells.clone()]);
    assert_eq!(
        search("%22plate%20tectonics%22%20or%20division")
            .await
            .len(),
        2
    );
    assert!(search("nonexistentword").await.is_empty());
    assert_eq!(search("%26%7C!(").await.len(), 0, "operators are just text");

    let (_, ready) = app.get_json("/api/v1/courses?status=ready", &token).await;
    assert_eq!(ready["total"], 2);
    let (_, queued) = app.get_json("/api/v1/courses?status=QUEUED", &token).await;
    assert_eq!(queued["total"], 0);
    let (_, future) = app
        .get_json("/api/v1/courses?created_after=2999-01-01T00:00:00Z", &token)
        .await;
    assert_eq!(future["total"], 0);
    let (_, past) = app
        .get_json(
            "/api/v1/courses?created_after=2000-01-01T00:00:00Z&sort=-title",
            &token,
        )
        .await;
    assert_eq!(past["total"], 2);
    app.stop().await;
}

#[actix_rt::test]
async fn progress_streams_until_ready_and_lessons_read_as_json_and_markdown() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let id = app.course(&token, "The water cycle").await;

    let r = app
        .get(&format!("/api/v1/courses/{id}/progress"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = tokio::time::timeout(Duration::from_secs(30), r.text())
        .await
        .expect("the stream ends once the course is READY")
        .unwrap();
    let progress: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = progress.last().expect("at least one progress event");
    assert_eq!(last["status"], "READY", "{text}");
    assert_eq!(last["lessons_generated"], 2);
    assert!(text.contains("event: progress"));

    let (_, course) = app.get_json(&format!("/api/v1/courses/{id}"), &token).await;
    assert_eq!(course["status"], "READY");
    let lessons = course["lessons"].as_array().unwrap();
    assert_eq!(lessons.len(), 2);
    assert_eq!(lessons[0]["number"], 1);
    assert_eq!(lessons[1]["status"], "GENERATED");
    assert_eq!(
        lesson_titles(&course),
        [
            "What is the water cycle? A first look",
            "Bringing it together: a project on the water cycle"
        ]
    );

    let (_, events) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &token)
        .await;
    let generated = &events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "LessonGenerated" && e["payload"]["number"] == 1)
        .unwrap_or_else(|| panic!("lesson 1 in {events}"))["payload"];
    let (status, lesson) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/1"), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{lesson}");
    assert_eq!(lesson["number"], 1);
    assert_eq!(lesson["title"], "What is the water cycle? A first look");
    // The lesson reads back as it was generated.
    assert!(!lesson["content"].as_str().unwrap().is_empty());
    assert_eq!(lesson["content"], generated["content_md"]);
    assert!(!lesson["sections"].as_array().unwrap().is_empty());
    assert_eq!(lesson["sections"], generated["sections"]);
    assert!(!lesson["quiz"].as_array().unwrap().is_empty());
    assert_eq!(lesson["quiz"], generated["quiz"]);
    assert_eq!(lesson["sources"], generated["sources"]);

    let r = app
        .get(&format!("/api/v1/courses/{id}/lessons/1"), &token)
        .header("accept", "text/markdown")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    assert_eq!(r.text().await.unwrap(), lesson["content"].as_str().unwrap());

    for (n, want, code) in [
        ("3", StatusCode::NOT_FOUND, "not_found"),
        ("0", StatusCode::NOT_FOUND, "not_found"),
        ("4294967296", StatusCode::BAD_REQUEST, "invalid_path"),
        ("-1", StatusCode::BAD_REQUEST, "invalid_path"),
        ("one", StatusCode::BAD_REQUEST, "invalid_path"),
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/courses/{id}/lessons/{n}"), &token)
            .await;
        assert_error(status, &body, want, code);
    }

    let (_, job) = app.get_json(&format!("/api/v1/jobs/{id}"), &token).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["lessons_done"], 2);
    assert_eq!(job["lessons_total"], 2);
    assert_eq!(
        time(&job["started_at"]),
        recorded_at(&events, "GenerationStarted")
    );
    assert_eq!(
        time(&job["finished_at"]),
        recorded_at(&events, "CourseCompleted")
    );
    let (_, jobs) = app.get_json("/api/v1/jobs?status=completed", &token).await;
    assert_eq!(jobs["total"], 1);
    assert_eq!(jobs["items"][0]["id"], id);
    let (_, jobs) = app.get_json("/api/v1/jobs?status=pending", &token).await;
    assert_eq!(jobs["total"], 0);
    let (status, body) = app.get_json("/api/v1/jobs?status=QUEUED", &token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");

    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CourseRequested",
            "GenerationStarted",
            "OutlineGenerated",
            "LessonGenerated",
            "LessonGenerated",
            "SubtitlesGenerated",
            "SubtitlesGenerated",
            "CourseCompleted"
        ]
    );
    app.stop().await;
}

#[actix_rt::test]
async fn soft_delete_hides_a_course_and_restore_brings_it_back_both_in_history() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let id = app.course(&token, "Medieval castles").await;
    app.finished(&token, &id).await;
    let path = format!("/api/v1/courses/{id}");

    let r = app
        .client
        .delete(app.url(&format!("{path}?reason=duplicate")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let deleted_at = time(&body["deleted_at"]);

    let (status, body) = app.get_json(&path, &token).await;
    assert_error(status, &body, StatusCode::GONE, "deleted");
    let (_, page) = app.get_json("/api/v1/courses", &token).await;
    assert_eq!(page["total"], 0);
    let r = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let r = app
        .post(&format!("{path}/restore"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, body) = app.get_json(&path, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["deleted_at"].is_null());
    let (_, page) = app.get_json("/api/v1/courses", &token).await;
    assert_eq!(page["total"], 1);
    let r = app
        .post(&format!("{path}/restore"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    let (_, events) = app.get_json(&format!("{path}/events"), &token).await;
    let events = events.as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        &types[types.len() - 2..],
        ["CourseDeleted", "CourseRestored"]
    );
    let deleted = &events[types.len() - 2];
    assert_eq!(deleted["payload"]["reason"], "duplicate");
    assert_eq!(time(&deleted["recorded_at"]), deleted_at);
    assert_eq!(deleted["metadata"]["producer"], "http");
    app.stop().await;
}

#[actix_rt::test]
async fn retry_reopens_a_failed_course_and_is_409_otherwise() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script {
        always: Some(error(401, "invalid_api_key")),
        ..Script::default()
    }))
    .await;
    let token = user_token(Uuid::new_v4());
    let id = app.course(&token, "Doomed course").await;
    let course = app.finished(&token, &id).await;
    assert_eq!(course["status"], "FAILED");
    assert!(course["error"].as_str().unwrap().contains("outline"));
    let (_, job) = app.get_json(&format!("/api/v1/jobs/{id}"), &token).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], course["error"]);

    let r = app
        .post(&format!("/api/v1/courses/{id}/retry"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (_, events) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &token)
        .await;
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_type"] == "GenerationRetried"));
    app.stop().await;

    let mut app = TestApp::spawn(Overrides::default()).await;
    let id = app.course(&token, "Fine course").await;
    app.finished(&token, &id).await;
    let r = app
        .post(&format!("/api/v1/courses/{id}/retry"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "conflict");
    app.stop().await;
}

/// A course answered from the log while the projection lags (READY before
/// the projection has even its row) has its lessons readable too: the lesson
/// endpoint waits for the projection instead of answering 404.
#[actix_rt::test]
async fn a_lesson_of_a_course_answered_from_the_log_is_not_a_404() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    // Writers of `courses` wait behind this lock; readers do not.
    let mut blocker = app.db.client().await;
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE courses IN SHARE MODE")
        .await
        .unwrap();
    let id = app
        .requested(
            &token,
            json!({"topic": "Lagging projections", "num_lessons": 2}),
        )
        .await;
    let (_, course) = app.get_json(&format!("/api/v1/courses/{id}"), &token).await;
    assert_eq!(course["course_id"], id.as_str(), "{course}");
    eventually("READY in the log", Duration::from_secs(60), || async {
        let (_, v) = app.get_json(&format!("/api/v1/courses/{id}"), &token).await;
        (v["status"] == "READY").then_some(())
    })
    .await;
    let lesson = {
        let (client, url) = (
            app.client.clone(),
            app.url(&format!("/api/v1/courses/{id}/lessons/1")),
        );
        let token = token.clone();
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.commit().await.unwrap();
    let r = lesson.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["number"], 1, "{body}");
    assert!(body["content"].as_str().is_some_and(|c| !c.is_empty()));
    app.stop().await;
}

#[actix_rt::test]
async fn malformed_ids_and_unknown_routes_are_json_errors() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    for path in [
        "/api/v1/courses/not-a-uuid",
        "/api/v1/courses/123/events",
        "/api/v1/courses/zzz/lessons/1",
    ] {
        let (status, body) = app.get_json(path, &token).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_path");
    }
    let missing = Uuid::new_v4();
    for path in [
        format!("/api/v1/courses/{missing}"),
        format!("/api/v1/courses/{missing}/events"),
        format!("/api/v1/jobs/{missing}"),
        "/api/v1/nothing-here".to_owned(),
    ] {
        let (status, body) = app.get_json(&path, &token).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let r = app
        .client
        .put(app.url("/api/v1/courses"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    // RFC 9110: a 405 says which methods the route has.
    assert_eq!(r.headers()["allow"], "GET");
    assert_error(
        status,
        &r.json().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let r = app
        .client
        .request(
            reqwest::Method::TRACE,
            app.url(&format!("/api/v1/courses/{missing}")),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, DELETE, PATCH");
    app.stop().await;
}

#[actix_rt::test]
async fn health_metrics_and_openapi_describe_the_service() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let id = app.course(&token, "Metrics").await;
    app.finished(&token, &id).await;

    let (status, health) = app.get_json("/api/v1/health", "").await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"]["ok"], true);
    let names: Vec<&str> = health["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"courses"), "{health}");

    // A registered component that is down makes the service unavailable.
    app.application().health_hooks().register(
        "amqp",
        std::sync::Arc::new(|| coursegen::ingress::http::ComponentHealth {
            ok: false,
            state: "reconnecting".into(),
        }),
    );
    let (status, health) = app.get_json("/health", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["components"]["amqp"]["state"], "reconnecting");

    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    for metric in [
        "http_request_duration_seconds_bucket",
        "coursegen_events_appended_total",
        "coursegen_llm_calls_total",
        "coursegen_llm_tokens_total",
        "coursegen_projection_lag_events",
        "coursegen_course_actors",
    ] {
        assert!(text.contains(metric), "{metric} missing from\n{text}");
    }

    let (status, doc) = app.get_json("/api/v1/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, methods) in [
        ("/api/v1/courses/generate", &["post"][..]),
        ("/api/v1/courses", &["get"]),
        ("/api/v1/courses/{id}", &["delete", "get", "patch"]),
        ("/api/v1/courses/{id}/lessons/{n}", &["get"]),
        ("/api/v1/courses/{id}/events", &["get"]),
        ("/api/v1/courses/{id}/progress", &["get"]),
        ("/api/v1/courses/{id}/restore", &["post"]),
        ("/api/v1/courses/{id}/retry", &["post"]),
        ("/api/v1/jobs", &["get"]),
        ("/api/v1/jobs/{id}", &["get"]),
        ("/api/v1/health", &["get"]),
    ] {
        let operations = doc["paths"][path]
            .as_object()
            .unwrap_or_else(|| panic!("{path} missing"));
        let mut documented: Vec<&str> = operations.keys().map(String::as_str).collect();
        documented.sort_unstable();
        assert_eq!(documented, methods, "{path}");
    }
    // List items are bounded as the rules bound them (as sent).
    for schema in ["GenerateRequest", "MetadataEdit"] {
        let props = &doc["components"]["schemas"][schema]["properties"];
        assert_eq!(props["tags"]["items"]["maxLength"], 40, "{schema}");
        assert_eq!(
            props["prerequisites"]["items"]["maxLength"], 300,
            "{schema}"
        );
        assert_eq!(
            props["learning_outcomes"]["items"]["maxLength"], 300,
            "{schema}"
        );
    }
    app.stop().await;
}

#[actix_rt::test]
async fn without_a_secret_the_api_serves_one_local_user_on_loopback() {
    let mut app = TestApp::spawn(
        Overrides::default()
            .unset("--auth-jwt-secret")
            .set("--http-addr", "0.0.0.0:0"),
    )
    .await;
    assert!(app.addr().ip().is_loopback(), "bound to {}", app.addr());
    let r = app
        .client
        .post(app.url("/api/v1/courses/generate"))
        .json(&json!({"topic": "Local"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["user_id"],
        coursegen::ingress::http::LOCAL_USER.to_string()
    );
    let r = app
        .client
        .get(app.url("/api/v1/courses"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}
