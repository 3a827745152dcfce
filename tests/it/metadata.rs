//! Course metadata end to end: given in the request, proposed by the
//! outline where absent, edited with `PATCH` (history says who), filtered
//! and searched in the list.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{Overrides, TestApp};
use crate::fake_llm::Script;
use crate::http::{assert_error, user_token};

impl TestApp {
    async fn patch(&self, id: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .patch(self.url(&format!("/api/v1/courses/{id}")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn ids(&self, token: &str, query: &str) -> Vec<String> {
        let (status, body) = self
            .get_json(&format!("/api/v1/courses?{query}"), token)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["course_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[actix_rt::test]
async fn requested_metadata_is_kept_and_the_outline_proposes_the_rest() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script::default())).await;
    let token = user_token(Uuid::new_v4());
    let (status, body) = app
        .generate(
            &token,
            json!({
                "topic": "Volcanoes", "num_lessons": 2, "author": "  Ada Lovelace ",
                "tags": ["Earth Science", "#geology", "earth_science"],
                "prerequisites": ["Reading maps"]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["author"], "Ada Lovelace");
    assert_eq!(body["tags"], json!(["earth-science", "geology"]));
    let id = body["course_id"].as_str().unwrap().to_owned();
    let course = app.finished(&token, &id).await;
    assert_eq!(course["status"], "READY", "{course}");
    // The request's tags win over the outline's; the outline fills the rest.
    assert_eq!(course["tags"], json!(["earth-science", "geology"]));
    assert_eq!(course["difficulty"], "beginner");
    assert_eq!(course["learning_outcomes"], json!(["Use the first idea"]));
    assert_eq!(course["prerequisites"], json!(["Reading maps"]));
    // Two lessons of a few words (1 min each), three quiz questions and a
    // true/false each, and an exercise (10 min) each.
    assert_eq!(course["estimated_minutes"], 2 * (1 + 4 + 10), "{course}");

    // Without request metadata, the outline's proposals, normalised.
    let other = app.course(&token, "Glaciers").await;
    let other = app.finished(&token, &other).await;
    assert_eq!(other["tags"], json!(["fake-tag", "glaciers"]));
    assert!(other["author"].is_null());
    app.stop().await;
}

#[actix_rt::test]
async fn bad_metadata_is_refused_with_json_errors() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    for body in [
        json!({"topic": "x", "tags": many}),
        json!({"topic": "x", "tags": ["y".repeat(41)]}),
        json!({"topic": "x", "difficulty": "easy"}),
        json!({"topic": "x", "author": "a\u{7}b"}),
        json!({"topic": "x", "tags": "rust"}),
    ] {
        let (status, reply) = app.generate(&token, body.clone()).await;
        assert_error(status, &reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let id = app.course(&token, "Rivers").await;
    for body in [
        json!({}),
        json!({"tags": []}),
        json!({"language": "not a language"}),
        json!({"owner": "me"}),
        json!([1]),
    ] {
        let (status, reply) = app.patch(&id, &token, body.clone()).await;
        assert_error(status, &reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, reply) = app
        .patch(&Uuid::new_v4().to_string(), &token, json!({"author": "x"}))
        .await;
    assert_error(status, &reply, StatusCode::NOT_FOUND, "not_found");
    // Someone else's course is not found either.
    let stranger = user_token(Uuid::new_v4());
    let (status, _) = app.patch(&id, &stranger, json!({"author": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[actix_rt::test]
async fn an_edit_changes_the_metadata_and_the_history_shows_who_changed_what() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let token = user_token(user);
    let id = app.course(&token, "Deserts").await;
    app.finished(&token, &id).await;

    let (status, course) = app
        .patch(
            &id,
            &token,
            json!({"author": "Grace", "tags": ["Dunes", "Climate"], "language": "pt-br",
                   "difficulty": "advanced", "learning_outcomes": ["Read a dune"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{course}");
    assert_eq!(course["author"], "Grace");
    assert_eq!(course["tags"], json!(["dunes", "climate"]));
    assert_eq!(course["language"], "pt-BR");
    assert_eq!(course["difficulty"], "advanced");
    assert_eq!(course["learning_outcomes"], json!(["Read a dune"]));

    // The same values again record nothing.
    app.patch(&id, &token, json!({"author": "Grace"})).await;
    let (_, events) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &token)
        .await;
    let changes: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "CourseMetadataChanged")
        .collect();
    assert_eq!(changes.len(), 1, "{events}");
    assert_eq!(changes[0]["metadata"]["user_id"], user.to_string());
    assert_eq!(changes[0]["payload"]["tags"], json!(["dunes", "climate"]));
    assert!(changes[0]["payload"].get("prerequisites").is_none());
    app.stop().await;
}

#[actix_rt::test]
async fn the_list_filters_by_tag_author_language_and_difficulty_and_searches_tags() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script::default())).await;
    let token = user_token(Uuid::new_v4());
    let (_, a) = app
        .generate(
            &token,
            json!({"topic": "Bees", "num_lessons": 1, "author": "Ada", "tags": ["Pollination"],
                   "language": "de", "difficulty": "advanced"}),
        )
        .await;
    let a = a["course_id"].as_str().unwrap().to_owned();
    let (_, b) = app
        .generate(
            &token,
            json!({"topic": "Ants", "num_lessons": 1, "tags": ["colonies"]}),
        )
        .await;
    let b = b["course_id"].as_str().unwrap().to_owned();
    app.finished(&token, &a).await;
    app.finished(&token, &b).await;

    assert_eq!(app.ids(&token, "tag=Pollination").await, vec![a.clone()]);
    assert_eq!(app.ids(&token, "tag=colonies").await, vec![b.clone()]);
    assert_eq!(app.ids(&token, "author=ada").await, vec![a.clone()]);
    assert_eq!(app.ids(&token, "language=DE").await, vec![a.clone()]);
    assert_eq!(
        app.ids(&token, "difficulty=advanced").await,
        vec![a.clone()]
    );
    assert_eq!(
        app.ids(&token, "difficulty=beginner").await,
        vec![b.clone()]
    );
    assert_eq!(app.ids(&token, "q=pollination").await, vec![a.clone()]);
    assert!(app.ids(&token, "tag=none").await.is_empty());

    // An edit moves a course between filters.
    app.patch(
        &b,
        &token,
        json!({"tags": ["pollination"], "author": "Ada"}),
    )
    .await;
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    let mut found = app.ids(&token, "tag=pollination&author=ADA").await;
    found.sort();
    assert_eq!(found, both);
    assert!(app.ids(&token, "q=colonies").await.is_empty());

    for bad in [
        "difficulty=easy",
        "language=xx-%3F",
        "tag=".to_owned().as_str(),
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/courses?{bad}"), &token)
            .await;
        if bad == "tag=" {
            assert_eq!(status, StatusCode::OK, "an empty filter is no filter");
        } else {
            assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_query");
        }
    }
    app.stop().await;
}

#[actix_rt::test]
async fn courses_edit_records_the_change_and_events_show_it_readably() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let token = user_token(user);
    let id = app.course(&token, "Tides").await;
    app.finished(&token, &id).await;

    let out = app.cli(&[
        "courses",
        "edit",
        &id,
        "--tag",
        "Moon",
        "--tag",
        "ocean",
        "--author",
        "Ada",
        "--difficulty",
        "beginner",
        "--user",
        &user.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let course = crate::helpers::eventually(
        "the edit in the projection",
        std::time::Duration::from_secs(30),
        || async {
            let (_, c) = app.get_json(&format!("/api/v1/courses/{id}"), &token).await;
            (c["author"] == "Ada").then_some(c)
        },
    )
    .await;
    assert_eq!(course["tags"], json!(["moon", "ocean"]));
    assert_eq!(course["difficulty"], "beginner");

    let out = app.cli(&["events", &id]);
    assert!(out.status.success());
    let timeline = String::from_utf8_lossy(&out.stdout);
    let line = timeline
        .lines()
        .find(|l| l.contains("CourseMetadataChanged"))
        .unwrap_or_else(|| panic!("{timeline}"));
    assert!(
        line.contains("author \"Ada\"; tags [moon, ocean]; difficulty beginner")
            && line.contains(&format!("by user {user}")),
        "{line}"
    );

    for (args, want) in [
        (
            vec!["courses", "edit", id.as_str()],
            "name at least one field",
        ),
        (
            vec!["courses", "edit", id.as_str(), "--difficulty", "easy"],
            "difficulty must be",
        ),
        (
            vec!["courses", "edit", &Uuid::nil().to_string(), "--author", "x"],
            "no course with id",
        ),
    ] {
        let out = app.cli(&args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{stderr}");
    }
    app.stop().await;
}
