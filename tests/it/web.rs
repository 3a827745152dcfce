//! The web app in a real browser (headless Chromium), against the real
//! server: a course asked for through the form, followed live to READY,
//! read, quizzed, deleted and restored; a hostile lesson that runs nothing;
//! another user's course that is a 404 page.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::app::{Overrides, TestApp};
use crate::browser::browse;
use crate::fake_llm::{Gate, Script};
use crate::http::user_token;

const LIVE: Duration = Duration::from_secs(60);

#[actix_web::test]
async fn a_course_asked_for_in_the_form_is_followed_live_read_quizzed_deleted_and_restored() {
    let gate = Gate::on_lesson(2);
    let app = TestApp::spawn(Overrides::default().fake_llm(Script {
        gate: Some(gate.clone()),
        ..Script::default()
    }))
    .await;
    let token = user_token(Uuid::new_v4());
    // What the API answers to a request the form will send too.
    let api = app
        .post("/api/v1/courses/generate", &token)
        .json(&json!({"topic": "Tides", "num_lessons": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 400);
    let api_message = api.json::<serde_json::Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = |p: &str| app.url(p);
    browse("form_live_quiz_delete_restore", |b| async move {
        b.goto(&url(&format!("/?token={token}"))).await;
        assert_eq!(b.path().await, "/", "the token leaves the address");
        assert!(b.text("#empty-state").await.contains("No courses yet"));

        b.click("a[href='/courses/new']").await;
        b.fill("#topic", "Tides").await;
        b.fill("#num_lessons", "30").await;
        b.click("#new-course button[type=submit]").await;
        assert_eq!(b.text("#num_lessons-error").await, api_message);
        assert_eq!(
            b.find("#topic")
                .await
                .prop("value")
                .await
                .unwrap()
                .as_deref(),
            Some("Tides"),
            "what was typed stays"
        );

        b.fill("#num_lessons", "2").await;
        b.click("#new-course button[type=submit]").await;
        let course = b.path().await;
        assert!(course.starts_with("/courses/"), "{course}");
        let course = url(course.split('?').next().unwrap());
        b.eval("window.__samePage = true; return null").await;
        // Lesson 2 is held at the model: the first lesson lands live.
        b.wait_text("#lesson-1", LIVE, |t| !t.contains("being written"))
            .await;
        assert!(b.has("#lesson-1 a").await);
        assert_ne!(b.text("#status").await, "READY");
        b.shot("lesson 1 landed").await;
        gate.open();
        b.wait_text("#status", LIVE, |t| t == "READY").await;
        b.wait_text("#lessons-done", LIVE, |t| t == "2").await;
        b.find("#lesson-2 a").await;
        assert_eq!(
            b.eval("return window.__samePage === true").await,
            json!(true),
            "the page was not reloaded"
        );
        b.shot("ready").await;
        b.click("summary").await;
        assert!(b.text("#history").await.contains("CourseCompleted"));

        b.click("#lesson-1 a").await;
        assert_eq!(b.text(".lesson-title").await, "Lesson 1");
        assert!(b.has("nav.toc a[href='#sec-idea']").await);
        assert!(b.has("#next").await && !b.has("#prev").await);
        // Every question's right answer is B (index 1): one right, one wrong.
        b.click("#question-0 input[value='1']").await;
        b.click("#question-1 input[value='0']").await;
        b.click("#check-quiz").await;
        assert_eq!(b.text("#score").await, "1 of 3 right.");
        let class = |i: usize| {
            let b = b.clone();
            async move {
                b.find(&format!("#question-{i}"))
                    .await
                    .attr("class")
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        assert!(class(0).await.contains("right"));
        assert!(class(1).await.contains("wrong"));
        assert!(b.text("#verdict-0").await.contains("Right. B is right."));
        assert!(b
            .text("#verdict-1")
            .await
            .contains("Not quite. B is right."));
        b.click("#next").await;
        assert_eq!(b.text(".lesson-title").await, "Lesson 2");

        b.click(".crumbs a:nth-of-type(2)").await;
        b.click("#delete").await;
        assert!(b.has("#deleted-badge").await);
        b.goto(&url("/")).await;
        assert!(b.text("#empty-state").await.contains("No courses yet"));
        b.goto(&course).await;
        b.click("#restore").await;
        assert!(b.text("#notice").await.contains("restored"));
        assert!(!b.has("#deleted-badge").await && b.has("#delete").await);
        b.goto(&url("/")).await;
        assert!(b.text("#courses").await.contains("All about Tides"));
        assert!(b.text("#courses").await.contains("READY"));
    })
    .await;
}

#[actix_web::test]
async fn a_lesson_with_scripts_handlers_and_javascript_links_runs_none_of_them() {
    let markdown = "# Hostile\n\n## Idea\n\n<script>window.__ran = 'script'</script>\n\n\
        <img src=\"/missing.png\" onerror=\"window.__ran = 'onerror'\">\n\n\
        [click me](javascript:window.__ran='link') \
        <a id=\"raw\" href=\"javascript:window.__ran='raw'\">raw link</a>\n\n\
        <svg><script>window.__ran = 'svg'</script></svg>\n\n\
        ```python\nprint('hi')  # a comment\nif True: pass\n```\n";
    // The elements' texts carry the same payloads.
    let evil =
        "<script>window.__ran = 'element'</script><img src=x onerror=\"window.__ran = 'img'\">";
    let elements = json!([
        { "id": "c", "kind": "code_block", "language": "python\" onmouseover=\"window.__ran='attr'",
          "code": evil, "caption": evil, "expected_output": evil },
        { "id": "e", "kind": "exercise", "prompt": format!("{evil} [go](javascript:window.__ran='md')"),
          "hints": [evil], "solution": evil, "difficulty": "beginner" },
        { "id": "q", "kind": "single_choice", "question": evil, "options": [evil, "b"],
          "answer_indexes": [0], "explanation": evil },
        { "id": "s", "kind": "short_answer", "question": evil, "accepted_answers": [evil],
          "explanation": "\"><script>window.__ran = 'attribute'</script>" }
    ]);
    let app = TestApp::spawn(Overrides::default().fake_llm(Script {
        lesson_markdown: Some(markdown.to_owned()),
        lesson_elements: Some(elements),
        ..Script::default()
    }))
    .await;
    let token = user_token(Uuid::new_v4());
    let id = app
        .requested(&token, json!({"topic": "Trust", "num_lessons": 1}))
        .await;
    app.course_in(&token, &id, "READY").await;
    let lesson = app.url(&format!("/courses/{id}/lessons/1?token={token}"));
    browse("hostile_lesson", |b| async move {
        b.goto(&lesson).await;
        assert_eq!(b.text(".lesson-title").await, "Lesson 1");
        assert!(b.text("#content").await.contains("click me"));
        for link in b.client.find_all(fantoccini::Locator::Css("#content a")).await.unwrap() {
            let _ = link.click().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.shot("after clicking every link").await;
        assert_eq!(b.eval("return window.__ran === undefined").await, json!(true));
        let dom = b
            .eval(
                "const c = document.getElementById('content'); return [\
                 c.querySelectorAll('script').length, \
                 c.querySelectorAll('[onerror]').length, \
                 [...c.querySelectorAll('a')].filter(a => (a.getAttribute('href') || '').toLowerCase().includes('javascript')).length]",
            )
            .await;
        assert_eq!(dom, json!([0, 0, 0]));
        // The elements show their payloads as text, and checking or
        // revealing an answer runs none of them.
        assert!(b.text("#element-3 legend").await.contains("<script>"));
        for summary in b.client.find_all(fantoccini::Locator::Css("#practice summary")).await.unwrap() {
            let _ = summary.click().await;
        }
        b.click("#element-3 input[value='0']").await;
        b.click("#element-3 .check-answer").await;
        b.fill("#element-4-answer", evil).await;
        b.click("#element-4 .check-answer").await;
        assert!(b.text("#element-4 .feedback").await.starts_with("✔ Right."));
        for link in b.client.find_all(fantoccini::Locator::Css("#practice a")).await.unwrap() {
            let _ = link.click().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.shot("after answering every element").await;
        assert_eq!(b.eval("return window.__ran === undefined").await, json!(true));
        let practice = b
            .eval(
                "const p = document.getElementById('practice'); return [\
                 p.querySelectorAll('script').length, \
                 p.querySelectorAll('[onerror], [onmouseover]').length, \
                 [...p.querySelectorAll('a')].filter(a => (a.getAttribute('href') || '').toLowerCase().includes('javascript')).length]",
            )
            .await;
        assert_eq!(practice, json!([0, 0, 0]));
        // The code block is highlighted by the page's own script.
        assert!(b.has("pre code[data-highlighted] span.tok-str").await);
        assert!(b.has("pre code span.tok-com").await);
        assert!(b.has("pre code span.tok-kw").await);
    })
    .await;
}

#[actix_web::test]
async fn with_auth_one_user_cannot_open_another_users_course_page() {
    let app = TestApp::spawn(Overrides::default()).await;
    let (alice, bob) = (user_token(Uuid::new_v4()), user_token(Uuid::new_v4()));
    let id = app
        .requested(
            &alice,
            json!({"topic": "Secrets of Alice", "num_lessons": 1}),
        )
        .await;
    let url = |p: &str| app.url(p);
    browse("tenant_404", |b| async move {
        // No session: the login page, which comes back to the page after.
        b.goto(&url(&format!("/courses/{id}"))).await;
        assert_eq!(b.path().await.split('?').next(), Some("/login"));
        b.fill("#token", "not a token").await;
        b.click("form[action='/login'] button").await;
        assert!(b.text("#login-error").await.contains("invalid token"));
        b.fill("#token", &bob).await;
        b.click("form[action='/login'] button").await;
        assert_eq!(b.path().await, format!("/courses/{id}"));
        assert_eq!(b.text("#error-heading").await, "Not found");
        b.goto(&url("/")).await;
        assert!(b.text("#empty-state").await.contains("No courses yet"));
        b.goto(&url(&format!("/courses/{id}/lessons/1"))).await;
        assert_eq!(b.text("#error-heading").await, "Not found");

        // Alice, given her token once in a link, sees it.
        b.goto(&url(&format!("/courses/{id}?token={alice}"))).await;
        assert_eq!(b.path().await, format!("/courses/{id}"));
        assert!(b.text("main").await.contains("Secrets of Alice"));
        let cookie = b
            .client
            .get_named_cookie("coursegen_session")
            .await
            .unwrap();
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    })
    .await;
}

/// A client that does not follow redirects, so that every answer is seen;
/// with `token`, it sends the session cookie a login would have set.
fn page_client(token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::COOKIE,
            format!("coursegen_session={t}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

#[actix_web::test]
async fn forms_without_the_csrf_token_are_refused_and_pages_answer_html() {
    let app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let client = page_client(None);
    // Without a session: the login page, coming back afterwards.
    let r = client.get(app.url("/courses/new")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login?next=%2Fcourses%2Fnew"));
    // ?token= is stored and dropped from the address.
    let r = client
        .get(app.url(&format!("/?q=x&token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/?q=x");
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let client = page_client(Some(&token));
    let r = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(r.text().await.unwrap().contains("No courses yet"));
    // A form post without (or with another) CSRF token changes nothing.
    for csrf in ["", "0123456789abcdef0123456789abcdef"] {
        let r = client
            .post(app.url("/courses/new"))
            .form(&[("topic", "Forged"), ("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("This form has expired"));
    }
    let (_, list) = app.get_json("/api/v1/courses", &token).await;
    assert_eq!(list["total"], 0);
    // Pages nobody serves are HTML; the API's stay JSON.
    let r = client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let r = client.get(app.url("/api/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    for bad in ["/courses/not-a-uuid", "/courses/not-a-uuid/lessons/x"] {
        let r = client.get(app.url(bad)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
}

#[actix_web::test]
async fn the_library_pages_filters_and_explains_an_empty_search() {
    let app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    for i in 0..23 {
        let r = app
            .post("/api/v1/courses/generate", &token)
            .json(&json!({"topic": format!("Topic {i}"), "num_lessons": 1,
                          "language": if i == 0 { "de" } else { "en" }}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let client = page_client(Some(&token));
    let page = |q: &'static str| {
        let (client, url) = (client.clone(), app.url(q));
        async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let first = page("/").await;
    assert!(
        first.contains("23 courses") && first.contains("Page 1 of 2"),
        "{first}"
    );
    assert_eq!(first.matches("class=\"card\"").count(), 20);
    assert!(first.contains("href=\"/?page=2\""));
    let second = page("/?page=2").await;
    assert_eq!(second.matches("class=\"card\"").count(), 3);
    let german = page("/?language=de").await;
    assert!(
        german.contains("1 course<") && german.contains("Topic 0"),
        "{german}"
    );
    let none = page("/?q=nothingmatchesthis").await;
    assert!(none.contains("No course matches"));
    let bad = page("/?status=DONE&page=x").await;
    assert!(bad.contains("role=\"alert\""), "{bad}");
}

#[actix_web::test]
async fn a_failed_course_page_shows_the_reason_and_its_retry_button_reopens_it() {
    let app = TestApp::spawn(Overrides::default().fake_llm(Script {
        failing_lessons: [(1, crate::fake_llm::error(400, "invalid_request_error"))].into(),
        ..Script::default()
    }))
    .await;
    let token = user_token(Uuid::new_v4());
    let id = app
        .requested(&token, json!({"topic": "Fragile", "num_lessons": 1}))
        .await;
    app.course_in(&token, &id, "FAILED").await;
    let client = page_client(Some(&token));
    let r = client
        .get(app.url(&format!("/courses/{id}")))
        .send()
        .await
        .unwrap();
    let csrf = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find_map(|c| c.strip_prefix("coursegen_csrf="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"failure-reason\""), "{html}");
    assert!(html.contains("fake invalid_request_error"), "{html}");
    assert!(html.contains(&format!("action=\"/courses/{id}/retry\"")));
    let r = client
        .post(app.url(&format!("/courses/{id}/retry")))
        .header(
            "cookie",
            format!("coursegen_session={token}; coursegen_csrf={csrf}"),
        )
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/courses/{id}?done=retried").as_str()
    );
    let (_, events) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &token)
        .await;
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_type"] == "GenerationRetried"));
}
