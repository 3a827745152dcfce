//! The web app's newer parts in a real browser (headless Chromium): the
//! source folder picked in the new-course form, a lesson's interactive
//! elements answered in place and its transcript, one `<h1>` on every
//! page, and the library's tag filter.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{Overrides, TestApp};
use crate::browser::{browse, Browser};
use crate::fake_llm::Script;
use crate::helpers::eventually;
use crate::http::user_token;

/// How many `<h1>` the page has.
async fn h1_count(b: &Browser) -> Value {
    b.eval("return document.querySelectorAll('h1').length")
        .await
}

/// Adds text documents at `paths` to `token`'s library and waits until the
/// library lists them.
async fn add_sources(app: &TestApp, token: &str, paths: &[&str]) {
    for path in paths {
        let r = app
            .post("/api/v1/sources", token)
            .json(&json!({"path": path, "text": format!("# {path}\n\nCells have membranes and ribosomes.")}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    eventually(
        "the library lists the documents",
        Duration::from_secs(30),
        || async {
            let (_, v) = app.get_json("/api/v1/sources?prefix=", token).await;
            let n = v
                .as_array()
                .or_else(|| v["items"].as_array())
                .map_or(0, Vec::len);
            (n == paths.len()).then_some(())
        },
    )
    .await;
}

#[actix_web::test]
async fn a_source_folder_picked_in_the_form_becomes_the_course_source_filter() {
    let app = TestApp::spawn(Overrides::default().fake_llm(Script::default())).await;
    let (reader, newcomer) = (user_token(Uuid::new_v4()), user_token(Uuid::new_v4()));
    add_sources(
        &app,
        &reader,
        &[
            "microbiology/cells/membrane.md",
            "microbiology/intro.md",
            "loose-notes.md",
        ],
    )
    .await;
    let app = &app;
    let url = |p: &str| app.url(p);
    browse("source_folder_form", |b| async move {
        // An empty library: only "none", and how to add documents.
        b.goto(&url(&format!("/courses/new?token={newcomer}")))
            .await;
        let options = b
            .eval(
                "return [...document.querySelectorAll('#source_filter option')].map(o => o.value)",
            )
            .await;
        assert_eq!(options, json!([""]));
        assert!(b
            .text("#source_filter-hint")
            .await
            .contains("Your source library is empty"));
        assert_eq!(h1_count(&b).await, json!(1));

        // The reader's folders, each with its documents; none by default.
        b.goto(&url(&format!("/courses/new?token={reader}"))).await;
        let options = b
            .eval(
                "return [...document.querySelectorAll('#source_filter option')]\
                 .map(o => [o.value, o.textContent, o.selected])",
            )
            .await;
        assert_eq!(
            options,
            json!([
                ["", "No filter: the whole library", true],
                ["microbiology/", "microbiology/ (2 documents)", false],
                [
                    "microbiology/cells/",
                    "microbiology/cells/ (1 document)",
                    false
                ],
            ])
        );
        b.fill("#topic", "Membranes").await;
        b.fill("#num_lessons", "1").await;
        b.find("#source_filter")
            .await
            .select_by_value("microbiology/cells/")
            .await
            .unwrap();
        b.click("#new-course button[type=submit]").await;
        let path = b.path().await;
        assert!(path.starts_with("/courses/"), "{path}");
        assert!(b.text("main").await.contains("microbiology/cells/"));
        let course = path
            .trim_start_matches("/courses/")
            .split('?')
            .next()
            .unwrap();
        let (_, view) = app
            .get_json(&format!("/api/v1/courses/{course}"), &reader)
            .await;
        assert_eq!(view["source_filter"], "microbiology/cells/", "{view}");
    })
    .await;
}

/// One element of each question kind, beside the default code block.
fn elements() -> Value {
    json!([
        { "id": "code", "kind": "code_block", "language": "python", "code": "print('hi')",
          "caption": "Say hi", "expected_output": "hi" },
        { "id": "ex", "kind": "exercise", "prompt": "Write **one** line.", "hints": ["Use print"],
          "solution": "`print('hi')`", "difficulty": "beginner" },
        { "id": "tf", "kind": "true_false", "question": "Water is wet", "answer": true,
          "explanation": "It is." },
        { "id": "single", "kind": "single_choice", "question": "Which is a vowel?",
          "options": ["B", "A", "C"], "answer_indexes": [1], "explanation": "A is a vowel." },
        { "id": "multi", "kind": "multiple_choice", "question": "Which are even?",
          "options": ["1", "2", "4"], "answer_indexes": [1, 2], "explanation": "2 and 4." },
        { "id": "short", "kind": "short_answer", "question": "Capital of France?",
          "accepted_answers": ["Paris"], "explanation": "Paris it is." }
    ])
}

#[actix_web::test]
async fn a_lesson_page_answers_its_elements_in_place_shows_its_transcript_and_has_one_h1() {
    let app = TestApp::spawn(Overrides::default().fake_llm(Script {
        lesson_elements: Some(elements()),
        ..Script::default()
    }))
    .await;
    let token = user_token(Uuid::new_v4());
    let id = app
        .requested(&token, json!({"topic": "Practice", "num_lessons": 1}))
        .await;
    app.course_in(&token, &id, "READY").await;
    let (_, cues) = app
        .get_json(&format!("/api/v1/courses/{id}/lessons/1/subtitles"), &token)
        .await;
    let first_cue = cues["cues"][0]["text"].as_str().unwrap().replace('\n', " ");
    let url = |p: &str| app.url(p);
    browse("lesson_elements_transcript", |b| async move {
        b.goto(&url(&format!("/?token={token}"))).await;
        assert_eq!(h1_count(&b).await, json!(1), "library");
        b.goto(&url(&format!("/courses/{id}"))).await;
        assert_eq!(h1_count(&b).await, json!(1), "course page");
        b.goto(&url(&format!("/courses/{id}/lessons/1"))).await;
        // The markdown's own "# Lesson 1" is left out: the page's title is the one h1.
        assert_eq!(h1_count(&b).await, json!(1), "lesson page");
        assert_eq!(b.text("h1").await, "Lesson 1");
        assert!(b.has("nav.toc a[href='#practice']").await);
        assert!(b.has("nav.toc a[href='#transcript']").await);

        assert_eq!(b.text("#element-1 h3").await, "Say hi");
        assert!(b.has("#element-1 pre code[data-highlighted]").await);
        b.click("#element-2 details.solution summary").await;
        assert!(b.text("#element-2 .solution").await.contains("print('hi')"));

        // True / false, right.
        b.click("#element-3 input[value='0']").await;
        b.click("#element-3 .check-answer").await;
        assert_eq!(b.text("#element-3 .feedback").await, "✔ Right. It is.");
        // Single choice, wrong: the right option is marked.
        b.click("#element-4 input[value='0']").await;
        b.click("#element-4 .check-answer").await;
        assert_eq!(
            b.text("#element-4 .feedback").await,
            "✘ Not quite. A is a vowel."
        );
        assert!(b
            .find("#element-4 fieldset")
            .await
            .attr("class")
            .await
            .unwrap()
            .unwrap()
            .contains("wrong"));
        assert_eq!(b.text("#element-4 label.correct").await, "B. A");
        // Multiple choice: every right option is needed.
        b.click("#element-5 input[value='1']").await;
        b.click("#element-5 .check-answer").await;
        assert!(b.text("#element-5 .feedback").await.starts_with("✘"));
        b.click("#element-5 input[value='2']").await;
        b.click("#element-5 .check-answer").await;
        assert_eq!(b.text("#element-5 .feedback").await, "✔ Right. 2 and 4.");
        // Short answer, in any case and spacing.
        b.fill("#element-6-answer", "  paris ").await;
        b.click("#element-6 .check-answer").await;
        assert_eq!(b.text("#element-6 .feedback").await, "✔ Right. Paris it is.");

        // The transcript folds open, with times and the track's first cue.
        b.click("#transcript-text summary").await;
        let transcript = b.text("#transcript-text").await;
        assert!(transcript.contains(&first_cue), "{transcript}");
        assert_eq!(b.text("#transcript-text li:first-child time").await, "0:00");
        let vtt = b
            .eval(
                "return fetch(document.querySelector('#transcript a[href*=\"subtitles.vtt\"]').href)\
                 .then(r => Promise.all([r.status, r.headers.get('content-type'), \
                 r.headers.get('content-disposition'), r.text()]))",
            )
            .await;
        assert_eq!(vtt[0], 200, "{vtt}");
        assert!(vtt[1].as_str().unwrap().starts_with("text/vtt"), "{vtt}");
        assert_eq!(vtt[2], "attachment; filename=\"lesson-1.en.vtt\"");
        assert!(vtt[3].as_str().unwrap().starts_with("WEBVTT"), "{vtt}");
        let srt = b
            .eval(
                "return fetch(document.querySelector('#transcript a[href*=\"subtitles.srt\"]').href)\
                 .then(r => r.text())",
            )
            .await;
        assert!(srt.as_str().unwrap().starts_with("1\n00:00:00,000 --> "), "{srt}");
        // A language without a track, or another format, is a 404 page.
        let missing = b
            .eval(
                "const base = location.pathname; return Promise.all(\
                 [base + '/subtitles.vtt?lang=fr', base + '/subtitles.txt']\
                 .map(u => fetch(u).then(r => [r.status, r.headers.get('content-type')])))",
            )
            .await;
        assert_eq!(missing[0][0], 404, "{missing}");
        assert_eq!(missing[1][0], 404, "{missing}");
        assert!(missing[0][1].as_str().unwrap().starts_with("text/html"), "{missing}");
    })
    .await;
}

#[actix_web::test]
async fn the_tag_filter_narrows_the_library_as_the_api_does() {
    let app = TestApp::spawn(Overrides::default().fake_llm(Script::default())).await;
    let token = user_token(Uuid::new_v4());
    for (topic, tags) in [
        ("Tides", json!(["Ocean", "Earth Science"])),
        ("Volcanoes", json!(["Earth Science"])),
        ("Poems", json!(["Literature"])),
    ] {
        app.requested(
            &token,
            json!({"topic": topic, "num_lessons": 1, "tags": tags}),
        )
        .await;
    }
    let (_, api) = app
        .get_json("/api/v1/courses?tag=Earth%20Science", &token)
        .await;
    assert_eq!(api["total"], 2, "{api}");
    let url = |p: &str| app.url(p);
    browse("library_tag_filter", |b| async move {
        b.goto(&url(&format!("/?token={token}"))).await;
        assert_eq!(b.text(".count").await, "3 courses");
        // A card's tag is a link to the library filtered by it.
        b.click("#courses a[href='/?tag=ocean']").await;
        assert_eq!(b.path().await, "/?tag=ocean");
        assert_eq!(b.text(".count").await, "1 course");
        assert!(b.text("#courses").await.contains("Tides"));
        assert_eq!(
            b.find("#tag").await.prop("value").await.unwrap().as_deref(),
            Some("ocean")
        );
        // Typed as a person would: normalised as the API normalises it.
        b.fill("#tag", "Earth Science").await;
        b.click("form.filters button[type=submit]").await;
        assert_eq!(b.text(".count").await, "2 courses");
        let shown = b.text("#courses").await;
        assert!(
            shown.contains("Tides") && shown.contains("Volcanoes") && !shown.contains("Poems"),
            "{shown}"
        );
        // A course page's tags link there too.
        b.click("#courses .card h2 a").await;
        b.click("#details a[href='/?tag=earth-science']").await;
        assert_eq!(b.path().await, "/?tag=earth-science");
        assert_eq!(b.text(".count").await, "2 courses");
        b.fill("#tag", "nothing-has-this").await;
        b.click("form.filters button[type=submit]").await;
        assert!(b.text("#empty-state").await.contains("No course matches"));
    })
    .await;
}
