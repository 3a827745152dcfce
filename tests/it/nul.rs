//! NUL characters (U+0000), which PostgreSQL refuses in text and jsonb, are
//! the sender's mistake on every ingress: HTTP answers 400 wherever the NUL
//! hides (query, path, JSON body, form body), AMQP dead-letters the message
//! and answers an error reply. Nothing is recorded, nothing is a 500.

use std::time::Duration;

use coursegen::ingress::amqp::status::AmqpState;
use coursegen::ingress::amqp::wire::{Reply, ReplyStatus};
use coursegen::ingress::amqp::ERROR_HEADER;
use lapin::types::AMQPValue;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::amqp::{count_events, BROKER};
use crate::app::{Overrides, TestApp};
use crate::helpers::eventually;
use crate::http::{assert_error, user_token};

#[actix_rt::test]
async fn a_nul_anywhere_in_an_http_request_is_a_400_not_a_500() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let id = app.course(&token, "Null safety").await;

    for path in [
        "/api/v1/courses?q=%00".to_owned(),
        "/api/v1/jobs?q=a%00b".to_owned(),
        "/api/v1/courses?author=x%00".to_owned(),
        "/api/v1/courses?tag=%00a".to_owned(),
        "/api/v1/courses?status=READY%00".to_owned(),
        "/api/v1/jobs/%00".to_owned(),
        format!("/api/v1/courses/{id}%00"),
    ] {
        let (status, body) = app.get_json(&path, &token).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "nul_character");
    }

    refused(
        app.client
            .delete(app.url(&format!("/api/v1/courses/{id}?reason=a%00")))
            .bearer_auth(&token),
    )
    .await;

    for body in [
        r#"{"topic": "a\u0000b"}"#,
        r#"{"topic": "ok", "x\u0000": 1}"#,
        r#"{"topic": "ok", "author": "\\\u0000"}"#,
    ] {
        refused(
            app.post("/api/v1/courses/generate", &token)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    }
    refused(
        app.client
            .patch(app.url(&format!("/api/v1/courses/{id}")))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(r#"{"author": "Ada\u0000"}"#),
    )
    .await;
    let r = app
        .post("/api/v1/courses/generate", &token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("topic=a%00")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // An escaped backslash before `u0000` is text, not a NUL: the body
    // reaches the handler intact after the check read it.
    let (status, course) = app
        .generate(&token, json!({"topic": "Escapes \\u0000 in JSON"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{course}");
    assert_eq!(course["topic"], "Escapes \\u0000 in JSON");
    let (status, page) = app.get_json("/api/v1/courses?q=Escapes", &token).await;
    assert_eq!(status, StatusCode::OK, "{page}");

    let events = count_events(&app.db.store, "CourseRequested").await;
    assert_eq!(events, 2, "nothing recorded from the refused requests");
    app.stop().await;
}

/// Sends `request` and expects the edge's 400 `nul_character`.
async fn refused(request: reqwest::RequestBuilder) {
    let r = request.send().await.unwrap();
    let status = r.status();
    assert_error(
        status,
        &r.json().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "nul_character",
    );
}

#[actix_rt::test]
async fn a_nul_in_an_amqp_message_or_its_properties_is_dead_lettered_and_answered() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::spawn(Overrides::default().amqp()).await;
    let user = Uuid::new_v4();
    let (reply_queue, mut replies) = app.queues().reply_queue().await;
    let in_body = Uuid::new_v4();
    let in_reply_to = Uuid::new_v4();
    let in_correlation = Uuid::new_v4();
    let body = |id: Uuid, topic: &str| {
        serde_json::to_vec(&json!({"request_id": id, "user_id": user, "topic": topic})).unwrap()
    };
    let queues = app.queues();
    queues
        .publish(&body(in_body, "a\u{0}b"), Some(&reply_queue), None)
        .await;
    queues
        .publish(
            &body(in_reply_to, "Fine topic"),
            Some("replies\u{0}x"),
            None,
        )
        .await;
    queues
        .publish(
            &body(in_correlation, "Fine topic"),
            Some(&reply_queue),
            Some("c\u{0}"),
        )
        .await;

    let mut answered = Vec::new();
    for _ in 0..2 {
        let (reply, properties) = crate::amqp::next_reply(&mut replies).await;
        assert_eq!(reply.status, ReplyStatus::Error, "{reply:?}");
        assert!(reply.error.as_deref().unwrap().contains("NUL"), "{reply:?}");
        assert!(properties.correlation_id().is_none());
        answered.push(reply.request_id.unwrap());
    }
    answered.sort();
    let mut want = vec![in_body.to_string(), in_correlation.to_string()];
    want.sort();
    assert_eq!(answered, want);
    // A broken reply_to: the error goes to the default reply queue.
    let queues = app.queues();
    eventually("the fallback reply", Duration::from_secs(30), || async {
        (queues.count(queues.responses()).await >= 1).then_some(())
    })
    .await;
    let fallback: Reply =
        serde_json::from_slice(&queues.drain(queues.responses()).await[0].delivery.data).unwrap();
    assert_eq!(fallback.request_id, Some(in_reply_to.to_string()));
    assert_eq!(fallback.status, ReplyStatus::Error);
    assert!(fallback.error.unwrap().contains("reply_to"));

    eventually("three dead letters", Duration::from_secs(30), || async {
        (queues.count(&queues.dead()).await >= 3).then_some(())
    })
    .await;
    let dead = queues.drain(&queues.dead()).await;
    assert_eq!(dead.len(), 3);
    for letter in &dead {
        let headers = letter.delivery.properties.headers().clone().unwrap();
        let reason = match headers.inner().get(ERROR_HEADER) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("no {ERROR_HEADER} header: {other:?}"),
        };
        assert!(reason.contains("NUL"), "{reason}");
    }
    let status = app.application().amqp_status().unwrap().snapshot();
    // The consumer carried on (the reply publisher may still be connecting:
    // nothing here needed it).
    assert_eq!(status.consumer.state, AmqpState::Connected, "{status:?}");
    assert_eq!(count_events(&app.db.store, "CourseRequested").await, 0);
    app.stop().await;
}
