//! Interactive elements end to end: generated as structured data (by the
//! offline generator and by a model), served in the lesson's JSON and on
//! their own endpoint.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{Overrides, TestApp};
use crate::fake_llm::Script;
use crate::http::{assert_error, user_token};

fn kinds(elements: &Value) -> Vec<&str> {
    elements
        .as_array()
        .unwrap_or_else(|| panic!("elements in {elements}"))
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

#[actix_rt::test]
async fn offline_lessons_carry_code_exercises_and_quizzes_as_structured_data() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let (status, body) = app
        .generate(&token, json!({"topic": "Python loops", "num_lessons": 2}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["course_id"].as_str().unwrap().to_owned();
    app.finished(&token, &id).await;

    let (status, lesson) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/2"), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{lesson}");
    assert_eq!(
        kinds(&lesson["elements"]),
        [
            "code_block",
            "exercise",
            "multiple_choice",
            "true_false",
            "short_answer"
        ]
    );
    let code = &lesson["elements"][0];
    assert_eq!(code["id"], "l2-code-1");
    assert_eq!(code["language"], "python");
    assert!(code["expected_output"]
        .as_str()
        .unwrap()
        .starts_with("Step 1: "));
    let exercise = &lesson["elements"][1];
    assert!(!exercise["solution"].as_str().unwrap().is_empty());
    assert!(!exercise["hints"].as_array().unwrap().is_empty());

    let (status, elements) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/2/elements"), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{elements}");
    assert_eq!(elements["elements"], lesson["elements"]);
    assert_eq!(elements["lesson"], 2);

    for path in [
        format!("/api/v1/courses/{id}/lessons/9/elements"),
        format!("/api/v1/courses/{}/lessons/1/elements", Uuid::new_v4()),
    ] {
        let (status, body) = app.get_json(&path, &token).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let (status, body) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/x/elements"), &token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    app.stop().await;
}

#[actix_rt::test]
async fn a_models_elements_are_kept_with_their_ids_and_count_in_the_duration() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script::default())).await;
    let token = user_token(Uuid::new_v4());
    let id = app.course(&token, "Wet water").await;
    let course = app.finished(&token, &id).await;
    // Per lesson: 1 reading minute, 3 quiz questions, 1 true/false, 1 exercise.
    assert_eq!(
        course["estimated_minutes"],
        2 * (1 + 3 + 1 + 10),
        "{course}"
    );
    let (_, elements) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/1/elements"), &token)
        .await;
    let ids: Vec<&str> = elements["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["l1-code", "l1-exercise", "l1-tf"]);
    // An exercise without a difficulty takes the course's.
    assert_eq!(elements["elements"][1]["difficulty"], "beginner");
    assert_eq!(elements["elements"][2]["answer"], true);
    app.stop().await;
}
