//! The API while its database is out of reach: 503 with `Retry-After` and a
//! JSON error, for writes and reads alike, and normal answers once the
//! database is back.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::app::{Overrides, TestApp};
use crate::helpers::{admin_url, eventually};

/// An admin connection that cuts a database off: existing sessions are
/// terminated and new ones refused, until [`Outage::end`].
struct Outage {
    admin: tokio_postgres::Client,
    database: String,
}

impl Outage {
    async fn begin(database: &str) -> Self {
        let (admin, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
            ))
            .await
            .unwrap();
        let outage = Self {
            admin,
            database: database.to_owned(),
        };
        // pg_terminate_backend only signals: wait until the sessions are gone.
        eventually(
            "the database's sessions gone",
            Duration::from_secs(10),
            || async {
                let left: i64 = outage
                    .admin
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                        &[&outage.database],
                    )
                    .await
                    .unwrap()
                    .get(0);
                (left == 0).then_some(())
            },
        )
        .await;
        outage
    }

    async fn end(self) {
        self.admin
            .batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                self.database
            ))
            .await
            .unwrap();
    }
}

#[actix_rt::test]
async fn while_the_database_is_unreachable_the_api_answers_503_with_retry_after() {
    let mut app = TestApp::spawn(Overrides::default().unset("--auth-jwt-secret")).await;
    let generate = app.url("/api/v1/courses/generate");
    let r = app
        .client
        .post(&generate)
        .json(&json!({"topic": "Outages", "num_lessons": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["course_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let course = app.url(&format!("/api/v1/courses/{id}"));

    let outage = Outage::begin(&app.db.name).await;
    for (method, url) in [
        (Method::POST, generate.clone()),
        (Method::GET, app.url("/api/v1/courses")),
        (Method::GET, course.clone()),
        (
            Method::GET,
            app.url(&format!("/api/v1/courses/{id}/events")),
        ),
    ] {
        let r = app
            .client
            .request(method.clone(), &url)
            .json(&json!({"topic": "During the outage"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {url}"
        );
        let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap());
        assert_eq!(retry_after, Some("5"), "{method} {url}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unavailable", "{method} {url}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("database"),
            "{body}"
        );
    }
    outage.end().await;

    eventually(
        "the API answering again",
        Duration::from_secs(30),
        || async {
            let r = app.client.get(&course).send().await.unwrap();
            (r.status() == StatusCode::OK).then_some(())
        },
    )
    .await;
    let r = app
        .client
        .post(&generate)
        .json(&json!({"topic": "After the outage", "num_lessons": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.stop().await;
}
