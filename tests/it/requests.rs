//! One request shape on every ingress: `POST /courses/generate` takes the
//! AMQP request as it is (`user_id` included), refuses what the AMQP
//! consumer refuses with the same message, and every refused AMQP message
//! with a readable `request_id` is answered, even one over the size limit.

use std::time::Duration;

use coursegen::domain::course_id;
use coursegen::ingress::amqp::wire::ReplyStatus;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::amqp::{count_events, next_reply, BROKER};
use crate::app::{Overrides, TestApp, JWT_SECRET};
use crate::helpers::eventually;

fn token(user: Uuid, admin: bool) -> String {
    let mut claims = json!({"sub": user, "exp": chrono::Utc::now().timestamp() + 3600});
    if admin {
        claims["role"] = json!("admin");
    }
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The AMQP request JSON, as an AMQP client sends it.
fn amqp_request(user: Uuid, topic: &str) -> Value {
    json!({
        "request_id": Uuid::new_v4(),
        "user_id": user,
        "topic": topic,
        "grade_level": "Grade 8",
        "num_lessons": 2,
        "source_filter": "oceans/",
        "language": "pt-br",
    })
}

async fn generate(app: &TestApp, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(app.url("/api/v1/courses/generate"))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

#[actix_rt::test]
async fn an_admin_names_the_owner_with_user_id() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let (admin, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let body = amqp_request(bob, "Tides");
    let (status, course) = generate(&app, Some(&token(admin, true)), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{course}");
    assert_eq!(course["user_id"], bob.to_string());
    assert_eq!(course["language"], "pt-BR");
    assert_eq!(course["source_filter"], "oceans/");
    let request_id: Uuid = body["request_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(course["course_id"], course_id(bob, request_id).to_string());
    // Bob owns it: he reads it.
    let (status, _) = app
        .get_json(
            &format!("/api/v1/courses/{}", course["course_id"].as_str().unwrap()),
            &token(bob, false),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[actix_rt::test]
async fn a_user_may_name_only_themselves_as_owner() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = token(alice, false);

    let (status, course) = generate(&app, Some(&alice_token), &amqp_request(alice, "Own")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{course}");
    assert_eq!(course["user_id"], alice.to_string());

    let (status, error) = generate(&app, Some(&alice_token), &amqp_request(bob, "Bob's")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert_eq!(error["error"], "forbidden");
    assert!(
        error["message"].as_str().unwrap().contains("only admins"),
        "{error}"
    );
    assert_eq!(count_events(&app.db.store, "CourseRequested").await, 1);

    // Without user_id the caller owns it.
    let (status, course) = generate(&app, Some(&alice_token), &json!({"topic": "Mine"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{course}");
    assert_eq!(course["user_id"], alice.to_string());
    app.stop().await;
}

#[actix_rt::test]
async fn without_auth_the_local_user_names_the_owner() {
    let mut app = TestApp::spawn(Overrides::default().unset("--auth-jwt-secret")).await;
    let bob = Uuid::new_v4();
    let (status, course) = generate(&app, None, &amqp_request(bob, "Local admin")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{course}");
    assert_eq!(course["user_id"], bob.to_string());
    app.stop().await;
}

#[actix_rt::test]
async fn unknown_fields_are_still_refused() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let mut body = amqp_request(user, "Extra");
    body["owner"] = json!("me");
    let (status, error) = generate(&app, Some(&token(user, false)), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"], "invalid_request");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `owner`"),
        "{error}"
    );
    assert_eq!(count_events(&app.db.store, "CourseRequested").await, 0);
    app.stop().await;
}

#[actix_rt::test]
async fn a_bad_request_gets_the_same_message_over_http_and_amqp() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::spawn(Overrides::default().amqp()).await;
    let user = Uuid::new_v4();
    let with = |field: &str, value: Value| {
        let mut body = amqp_request(user, "Same rules");
        body[field] = value;
        body
    };
    let bad = [
        with("num_lessons", json!(0)),
        with("num_lessons", json!("four")),
        with("topic", json!("x".repeat(201))),
        with("topic", json!("a\u{7}b")),
        with("grade_level", json!(7)),
        with("language", json!("not a language!")),
        with("source_filter", json!("/etc")),
        with("user_id", json!("not-a-uuid")),
        with("owner", json!("me")),
        with("tags", json!("rust")),
        with(
            "tags",
            json!((0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()),
        ),
        with("difficulty", json!("easy")),
        with("author", json!("x".repeat(101))),
    ];
    let queues = app.queues();
    let (reply_to, mut replies) = queues.reply_queue().await;
    for body in &bad {
        let (status, http) = generate(&app, Some(&token(user, false)), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{http}");
        assert_eq!(http["error"], "invalid_request", "{http}");

        queues
            .publish(&serde_json::to_vec(body).unwrap(), Some(&reply_to), None)
            .await;
        let (reply, _) = next_reply(&mut replies).await;
        assert_eq!(reply.status, ReplyStatus::Error);
        assert_eq!(reply.request_id.as_deref(), body["request_id"].as_str());
        assert_eq!(reply.error.as_deref(), http["message"].as_str(), "{body}");
    }
    assert_eq!(count_events(&app.db.store, "CourseRequested").await, 0);
    app.stop().await;
}

#[actix_rt::test]
async fn a_message_over_the_size_limit_is_answered_with_the_size_error() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::spawn(Overrides::default().amqp()).await;
    let queues = app.queues();
    let (reply_to, mut replies) = queues.reply_queue().await;
    let body = serde_json::to_vec(&amqp_request(Uuid::new_v4(), &"x".repeat(1024 * 1024))).unwrap();
    let request_id = serde_json::from_slice::<Value>(&body).unwrap()["request_id"].clone();
    queues.publish(&body, Some(&reply_to), Some("big")).await;

    let (reply, properties) = next_reply(&mut replies).await;
    assert_eq!(reply.status, ReplyStatus::Error);
    assert_eq!(reply.request_id.as_deref(), request_id.as_str());
    let error = reply.error.unwrap();
    assert!(
        error.contains(&format!("message body is {} bytes", body.len())),
        "{error}"
    );
    assert_eq!(
        properties.correlation_id().as_ref().map(|c| c.as_str()),
        Some("big")
    );
    eventually("the dead letter", Duration::from_secs(30), || async {
        (queues.count(&queues.dead()).await == 1).then_some(())
    })
    .await;
    let dead = queues.drain(&queues.dead()).await;
    assert_eq!(dead[0].delivery.data, body);
    assert_eq!(count_events(&app.db.store, "CourseRequested").await, 0);
    app.stop().await;
}

#[actix_rt::test]
async fn the_openapi_document_describes_the_amqp_request_body() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let r = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    let body = &doc["paths"]["/api/v1/courses/generate"]["post"];
    assert_eq!(
        body["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/GenerateRequest"
    );
    assert!(body["responses"]["403"].is_object(), "{body}");
    let schema = &doc["components"]["schemas"]["GenerateRequest"];
    let mut fields: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{schema}"))
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "author",
            "difficulty",
            "grade_level",
            "language",
            "learning_outcomes",
            "num_lessons",
            "prerequisites",
            "request_id",
            "source_filter",
            "subtitle_languages",
            "tags",
            "topic",
            "user_id"
        ]
    );
    assert_eq!(schema["additionalProperties"], false, "{schema}");
    let patch = &doc["paths"]["/api/v1/courses/{id}"]["patch"];
    assert_eq!(
        patch["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/MetadataEdit",
        "{patch}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn metadata_sent_over_amqp_is_recorded_like_over_http() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::spawn(Overrides::default().amqp()).await;
    let user = Uuid::new_v4();
    let mut body = amqp_request(user, "Metadata by message");
    body["author"] = json!("Ada");
    body["tags"] = json!(["Ocean Science"]);
    body["difficulty"] = json!("advanced");
    body["prerequisites"] = json!(["Swimming"]);
    let queues = app.queues();
    let (reply_to, mut replies) = queues.reply_queue().await;
    queues
        .publish(&serde_json::to_vec(&body).unwrap(), Some(&reply_to), None)
        .await;
    let (reply, _) = next_reply(&mut replies).await;
    assert_eq!(reply.status, ReplyStatus::Accepted);
    let id = reply.course_id.unwrap();
    let course = eventually("the course", Duration::from_secs(30), || async {
        let (status, course) = app
            .get_json(&format!("/api/v1/courses/{id}"), &token(user, false))
            .await;
        (status == StatusCode::OK).then_some(course)
    })
    .await;
    assert_eq!(course["author"], "Ada");
    assert_eq!(course["tags"], json!(["ocean-science"]));
    assert_eq!(course["difficulty"], "advanced");
    assert_eq!(course["prerequisites"], json!(["Swimming"]));
    app.stop().await;
}
