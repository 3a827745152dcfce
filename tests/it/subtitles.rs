//! Subtitles end to end: made from each lesson's narration in the course's
//! language, translated on request (or by the request's
//! `subtitle_languages`) cue by cue with the same timings, served as JSON,
//! WebVTT and SRT, resumed after a crash without translating again what is
//! recorded.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use coursegen::domain::{Command, Course, CourseRequest, CourseStatus, RawCourseRequest};
use coursegen::store::courses;
use coursegen::store::{EventStore, Metadata};

use crate::app::{Overrides, TestApp};
use crate::fake_llm::{mode_of, Asked, Dialect, Exchange, Script};
use crate::helpers::eventually;
use crate::http::{assert_error, user_token};

impl TestApp {
    async fn subtitles(&self, token: &str, id: &str, query: &str) -> (StatusCode, String) {
        let r = self
            .get(
                &format!("/api/v1/courses/{id}/lessons/1/subtitles?{query}"),
                token,
            )
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn ask_subtitles(&self, token: &str, id: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .post(&format!("/api/v1/courses/{id}/subtitles"), token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// Waits until the course has `tracks` subtitle tracks.
    async fn tracks(&self, token: &str, id: &str, tracks: i64) -> Value {
        eventually("the subtitle tracks", Duration::from_secs(60), || async {
            let (_, c) = self.get_json(&format!("/api/v1/courses/{id}"), token).await;
            (c["subtitles_generated"] == tracks).then_some(c)
        })
        .await
    }
}

/// `HH:MM:SS.mmm` (or `,` for SRT) as milliseconds.
fn millis(stamp: &str, separator: char) -> u64 {
    let (hms, ms) = stamp
        .split_once(separator)
        .unwrap_or_else(|| panic!("{stamp}"));
    assert_eq!(ms.len(), 3, "{stamp}");
    let parts: Vec<u64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{stamp}");
    assert!(hms.split(':').all(|p| p.len() == 2), "{stamp}");
    ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + ms.parse::<u64>().unwrap()
}

/// Checks a subtitle file's cue blocks: numbered from 1, `start --> end`
/// timings that rise and never overlap, 1 to 7 s each, one or two lines of
/// at most 42 characters. Returns the texts.
fn check_blocks(blocks: &[&str], separator: char, visible: impl Fn(&str) -> String) -> Vec<String> {
    let mut previous_end = 0;
    let mut texts = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines[0], (i + 1).to_string(), "{block}");
        let (start, end) = lines[1]
            .split_once(" --> ")
            .unwrap_or_else(|| panic!("{block}"));
        let (start, end) = (millis(start, separator), millis(end, separator));
        assert!(start >= previous_end, "cue {} overlaps: {block}", i + 1);
        assert!((1_000..=7_000).contains(&(end - start)), "{block}");
        previous_end = end;
        let text = &lines[2..];
        assert!((1..=2).contains(&text.len()), "{block}");
        assert!(
            text.iter().all(|l| visible(l).chars().count() <= 42),
            "{block}"
        );
        texts.push(text.join("\n"));
    }
    assert!(!texts.is_empty());
    texts
}

fn check_vtt(vtt: &str) -> Vec<String> {
    let body = vtt
        .strip_prefix("WEBVTT\n\n")
        .unwrap_or_else(|| panic!("header: {vtt}"));
    let blocks: Vec<&str> = body.trim_end().split("\n\n").collect();
    let texts = check_blocks(&blocks, '.', |l| {
        l.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    });
    for t in &texts {
        // No raw markup: `<` and `&` only as entities.
        assert!(!t.contains('<'), "{t}");
        assert!(
            t.replace("&amp;", "")
                .replace("&lt;", "")
                .replace("&gt;", "")
                .find('&')
                .is_none(),
            "{t}"
        );
    }
    texts
}

fn check_srt(srt: &str) -> Vec<String> {
    let blocks: Vec<&str> = srt.trim_end().split("\n\n").collect();
    check_blocks(&blocks, ',', str::to_owned)
}

#[actix_rt::test]
async fn subtitles_in_two_languages_are_served_as_json_webvtt_and_srt() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script::default())).await;
    let token = user_token(Uuid::new_v4());
    let (status, body) = app
        .generate(
            &token,
            json!({"topic": "Tides & <waves>", "num_lessons": 2, "subtitle_languages": ["fr", "en"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["subtitle_languages"],
        json!(["fr"]),
        "the course's own language is dropped"
    );
    let id = body["course_id"].as_str().unwrap().to_owned();
    let course = app.finished(&token, &id).await;
    assert_eq!(course["status"], "READY", "{course}");
    // Two lessons in English and in French, all before READY.
    assert_eq!(course["subtitles_generated"], 4, "{course}");
    let (_, job) = app.get_json(&format!("/api/v1/jobs/{id}"), &token).await;
    assert_eq!(job["subtitle_steps_done"], 4, "{job}");
    assert_eq!(job["subtitle_steps_total"], 4, "{job}");

    let (status, json_en) = app.subtitles(&token, &id, "").await;
    assert_eq!(status, StatusCode::OK);
    let json_en: Value = serde_json::from_str(&json_en).unwrap();
    assert_eq!(json_en["language"], "en");
    assert!(json_en["model"].is_null());
    let (status, vtt_en) = app.subtitles(&token, &id, "format=vtt").await;
    assert_eq!(status, StatusCode::OK);
    let en = check_vtt(&vtt_en);
    // The narration starts with the title (the lesson title of the fake).
    assert!(en[0].starts_with("Lesson 1."), "{vtt_en}");

    let (_, vtt_fr) = app.subtitles(&token, &id, "lang=FR&format=vtt").await;
    let fr = check_vtt(&vtt_fr);
    assert_eq!(fr, en.iter().map(|t| t.to_uppercase()).collect::<Vec<_>>());
    // Same timings: only the texts differ.
    let timings = |vtt: &str| -> Vec<String> {
        vtt.lines()
            .filter(|l| l.contains(" --> "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(timings(&vtt_en), timings(&vtt_fr));
    let (_, srt_fr) = app.subtitles(&token, &id, "lang=fr&format=srt").await;
    assert_eq!(check_srt(&srt_fr), fr);
    let (_, json_fr) = app.subtitles(&token, &id, "lang=fr").await;
    let json_fr: Value = serde_json::from_str(&json_fr).unwrap();
    assert!(json_fr["model"].is_string(), "{json_fr}");
    assert_eq!(json_fr["cues"].as_array().unwrap().len(), en.len());

    for (query, want) in [
        ("lang=de", StatusCode::NOT_FOUND),
        ("format=ass", StatusCode::BAD_REQUEST),
        ("lang=not%20a%20tag", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = app.subtitles(&token, &id, query).await;
        assert_eq!(status, want, "{query}: {body}");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn a_webvtt_file_escapes_markup_in_the_narration() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let id = app.course(&token, "Less <than> & more").await;
    app.finished(&token, &id).await;
    let (status, vtt) = app.subtitles(&token, &id, "format=vtt").await;
    assert_eq!(status, StatusCode::OK);
    check_vtt(&vtt);
    assert!(vtt.contains("&lt;than&gt; &amp; more"), "{vtt}");
    let (_, srt) = app.subtitles(&token, &id, "format=srt").await;
    check_srt(&srt);

    // Each format's media type is one the API document declares for it.
    let (_, doc) = app.get_json("/api/v1/openapi.json", &token).await;
    let declared = doc["paths"]["/api/v1/courses/{id}/lessons/{n}/subtitles"]["get"]["responses"]
        ["200"]["content"]
        .as_object()
        .unwrap_or_else(|| panic!("no 200 content declared: {doc}"));
    for (format, want) in [
        ("json", "application/json"),
        ("vtt", "text/vtt"),
        ("srt", "application/x-subrip"),
    ] {
        let r = app
            .get(
                &format!("/api/v1/courses/{id}/lessons/1/subtitles?format={format}"),
                &token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{format}");
        let served = r.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap();
        let essence = served.split(';').next().unwrap().trim();
        assert_eq!(essence, want, "{format}");
        assert!(
            declared.contains_key(essence),
            "{format} is served as {served}, the document declares {:?}",
            declared.keys().collect::<Vec<_>>()
        );
    }
    app.stop().await;
}

#[actix_rt::test]
async fn languages_asked_for_later_are_translated_by_the_actor() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script::default())).await;
    let token = user_token(Uuid::new_v4());
    let id = app.course(&token, "Rain").await;
    app.finished(&token, &id).await;
    let (status, course) = app
        .ask_subtitles(&token, &id, json!({"languages": ["de", "pt-br", "de"]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{course}");
    let course = app.tracks(&token, &id, 2 * 3).await;
    assert_eq!(course["subtitle_languages"], json!(["de", "pt-BR"]));
    assert_eq!(course["status"], "READY");
    let (status, _) = app.subtitles(&token, &id, "lang=pt-BR&format=srt").await;
    assert_eq!(status, StatusCode::OK);
    // The work is done: the course leaves the queue.
    eventually(
        "the course to leave the work queue",
        Duration::from_secs(30),
        || async {
            let n: i64 = app
                .db
                .client()
                .await
                .query_one("SELECT count(*) FROM course_work", &[])
                .await
                .unwrap()
                .get(0);
            (n == 0).then_some(())
        },
    )
    .await;
    let (_, events) = app
        .get_json(&format!("/api/v1/courses/{id}/events"), &token)
        .await;
    let types: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"SubtitlesRequested"), "{types:?}");
    assert_eq!(types.last(), Some(&"SubtitlesCompleted"), "{types:?}");
    // Asking again for what is there records nothing; bad bodies are 400.
    let translations = app.llm().requests();
    let (status, _) = app
        .ask_subtitles(&token, &id, json!({"languages": ["de"]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for body in [
        json!({"languages": []}),
        json!({"languages": ["??"]}),
        json!({"lang": "x"}),
    ] {
        let (status, reply) = app.ask_subtitles(&token, &id, body.clone()).await;
        assert_error(status, &reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
    // The course's own language always has subtitles: nothing to add.
    let (status, reply) = app
        .ask_subtitles(&token, &id, json!({"languages": ["en"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["course_id"], id.as_str());
    assert_eq!(app.llm().requests(), translations);
    app.stop().await;
}

async fn load(store: &EventStore, id: Uuid) -> Course {
    courses::load(store, id).await.unwrap().0
}

/// Waits until the course has `tracks` subtitle tracks in its log.
async fn tracks_in_log(store: &EventStore, id: Uuid, tracks: usize) -> Course {
    eventually("the subtitle tracks", Duration::from_secs(60), || async {
        let course = load(store, id).await;
        (course.subtitles.len() >= tracks).then_some(course)
    })
    .await
}

#[actix_rt::test]
async fn a_translation_interrupted_by_a_crash_resumes_without_translating_again() {
    let mut slow_translations = HashMap::new();
    slow_translations.insert(3, Duration::from_secs(3));
    let mut app = TestApp::new(
        Overrides::default()
            .fake_llm(Script {
                slow_translations,
                ..Script::default()
            })
            .set("--course-lease-secs", 2),
    )
    .await;
    let store = app.db.store.clone();
    let request = CourseRequest::parse(RawCourseRequest {
        request_id: Some(Uuid::new_v4().to_string()),
        user_id: Some(Uuid::new_v4().to_string()),
        topic: Some("Storms".into()),
        num_lessons: Some(4),
        ..Default::default()
    })
    .unwrap();
    let (id, _) = courses::submit(&store, request, Metadata::producer("test"))
        .await
        .unwrap();
    app.start_process();
    eventually(
        "the course to be READY",
        Duration::from_secs(60),
        || async { (load(&store, id).await.status == Some(CourseStatus::Ready)).then_some(()) },
    )
    .await;
    let ask = Command::RequestSubtitles {
        languages: vec!["fr".into()],
    };
    courses::execute(&store, id, ask, &Metadata::producer("test"))
        .await
        .unwrap();
    // Lessons 1 and 2 translated, lesson 3's translation in flight: crash.
    tracks_in_log(&store, id, 4 + 2).await;
    app.kill();
    assert_eq!(load(&store, id).await.subtitles.len(), 4 + 2);

    app.start_process();
    let course = tracks_in_log(&store, id, 4 + 4).await;
    assert_eq!(course.status, Some(CourseStatus::Ready));
    let counts = app.llm().counts();
    let asked = |lesson| Asked::Translation {
        lesson,
        language: "fr".into(),
    };
    assert_eq!(counts.get(&asked(1)), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&asked(2)), Some(&1), "{counts:?}");
    assert!(counts.contains_key(&asked(3)), "{counts:?}");
    assert_eq!(counts.get(&asked(4)), Some(&1), "{counts:?}");
    let french = store
        .read_stream(id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "SubtitlesGenerated" && e.payload["language"] == "fr")
        .count();
    assert_eq!(french, 4);
    eventually("SubtitlesCompleted", Duration::from_secs(30), || async {
        (!load(&store, id).await.subtitles_open).then_some(())
    })
    .await;
    app.stop().await;
}

#[actix_rt::test]
async fn courses_subtitles_writes_files_and_events_show_the_tracks() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let token = user_token(Uuid::new_v4());
    let (_, body) = app
        .generate(
            &token,
            json!({"topic": "Clouds", "num_lessons": 2, "subtitle_languages": ["fr"]}),
        )
        .await;
    let id = body["course_id"].as_str().unwrap().to_owned();
    app.finished(&token, &id).await;

    let out = app.cli(&[
        "courses",
        "subtitles",
        &id,
        "--lang",
        "fr",
        "--format",
        "srt",
        "--lesson",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srt = String::from_utf8(out.stdout).unwrap();
    let texts = check_srt(&srt);
    // The offline generator marks what it cannot translate.
    assert!(texts[0].starts_with("[fr] "), "{srt}");

    let dir = std::env::temp_dir().join(format!("coursegen-subtitles-{}", Uuid::new_v4()));
    let out = app.cli(&[
        "courses",
        "subtitles",
        &id,
        "--format",
        "vtt",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in 1..=2 {
        let vtt = std::fs::read_to_string(dir.join(format!("lesson-{n}.en.vtt"))).unwrap();
        check_vtt(&vtt);
    }
    std::fs::remove_dir_all(&dir).unwrap();

    for (args, want) in [
        (
            vec![
                "courses",
                "subtitles",
                id.as_str(),
                "--lang",
                "de",
                "--lesson",
                "1",
            ],
            "no subtitles in de",
        ),
        (
            vec![
                "courses",
                "subtitles",
                id.as_str(),
                "--format",
                "ass",
                "--lesson",
                "1",
            ],
            "unknown --format",
        ),
        (vec!["courses", "subtitles", id.as_str()], "name a --lesson"),
    ] {
        let out = app.cli(&args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{stderr}");
    }

    let out = app.cli(&["events", &id]);
    let timeline = String::from_utf8_lossy(&out.stdout);
    let tracks: Vec<&str> = timeline
        .lines()
        .filter(|l| l.contains("SubtitlesGenerated"))
        .collect();
    assert_eq!(tracks.len(), 4, "{timeline}");
    assert!(tracks[0].contains("lesson 1 in en: "), "{timeline}");
    assert!(
        tracks
            .iter()
            .any(|t| t.contains("in fr: ") && t.contains("translated by offline")),
        "{timeline}"
    );
    app.stop().await;
}

/// A server that takes only `json_object` with a schema (llama.cpp before
/// `json_schema`) translates too: the translation is asked in the mode the
/// outline learned, with the grammar form fixing the number of cues.
#[actix_rt::test]
async fn a_translation_is_asked_in_the_mode_the_server_takes_with_the_cue_count_fixed() {
    let llama_server: Dialect = std::sync::Arc::new(|x: &Exchange| {
        match mode_of(x.body) {
        "json_schema" => wiremock::ResponseTemplate::new(500).set_body_json(json!({
            "error": {"code": 500, "type": "server_error",
                "message": "response_format type must be one of \"text\" or \"json_object\", but got: json_schema"}
        })),
        _ => crate::fake_llm::completion(&x.answer),
    }
    });
    let mut app = TestApp::spawn(
        Overrides::default()
            .fake_llm(Script {
                dialect: Some(llama_server),
                ..Script::default()
            })
            // Its own model name: the learned mode is kept per base URL and model.
            .set("--llm-model", format!("model-{}", Uuid::new_v4().simple())),
    )
    .await;
    let token = user_token(Uuid::new_v4());
    let (status, body) = app
        .generate(
            &token,
            json!({"topic": "Tides", "num_lessons": 1, "subtitle_languages": ["fr"]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["course_id"].as_str().unwrap().to_owned();
    let course = app.finished(&token, &id).await;
    assert_eq!(course["status"], "READY", "{course}");
    assert_eq!(course["subtitles_generated"], 2, "{course}");

    let translations: Vec<Value> = app
        .llm()
        .bodies()
        .into_iter()
        .filter(|b| {
            b["messages"][1]["content"]
                .as_str()
                .is_some_and(|u| u.starts_with("Translate the subtitles"))
        })
        .collect();
    assert_eq!(translations.len(), 1);
    let format = &translations[0]["response_format"];
    assert_eq!(format["type"], "json_object", "{format}");
    let (_, json_en) = app.subtitles(&token, &id, "").await;
    let json_en: Value = serde_json::from_str(&json_en).unwrap();
    let cues = json_en["cues"].as_array().unwrap().len();
    let schema = &format["schema"]["properties"]["cues"];
    assert_eq!(schema["minItems"], cues, "{format}");
    assert_eq!(schema["maxItems"], cues, "{format}");
    assert_eq!(schema["items"]["minLength"], 1, "{format}");
    let (status, _) = app.subtitles(&token, &id, "lang=fr").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
