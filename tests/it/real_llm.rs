//! Opt-in: a 2-lesson course through a real OpenAI-compatible server, to
//! READY, with the token usage recorded. Runs only when
//! `COURSEGEN_TEST_LLM_URL` names the server's base URL (e.g. the
//! `http://127.0.0.1:8081/v1` that `scripts/local-llm.sh` prints);
//! `COURSEGEN_TEST_LLM_MODEL` names the model (default `local-model`),
//! `COURSEGEN_TEST_LLM_KEY` an API key if the server needs one,
//! `COURSEGEN_TEST_LLM_MAX_TOKENS` a lower `LLM_MAX_TOKENS` for slow servers. Prints the
//! seconds and tokens of each step, and the start of the first lesson.

use std::time::Duration;

use coursegen::domain::{CourseEvent, CourseStatus};

use crate::app::{Overrides, TestApp};
use crate::generation::{finished, submit};

#[actix_rt::test]
async fn a_real_server_generates_a_two_lesson_course_to_ready() {
    let Ok(url) = std::env::var("COURSEGEN_TEST_LLM_URL") else {
        eprintln!(
            "skipped: COURSEGEN_TEST_LLM_URL is not set (start a server with \
             scripts/local-llm.sh and set it to the base URL it prints)"
        );
        return;
    };
    // What the client decides (modes, re-asks and their reasons) on stderr.
    let _ = coursegen::telemetry::init(
        &coursegen::config::LogSettings {
            log_format: coursegen::config::LogFormat::Text,
            verbose: 0,
            log_file: None,
        },
        "warn,coursegen::llm=debug",
    );
    let model = std::env::var("COURSEGEN_TEST_LLM_MODEL").unwrap_or_else(|_| "local-model".into());
    let mut overrides = Overrides::default()
        .set("--llm-provider", "openai")
        .set("--openai-base-url", &url)
        .set("--llm-model", &model)
        .set("--llm-timeout-secs", 1800)
        .set("--llm-max-retries", 1)
        .set("--course-lease-secs", 30);
    if let Ok(max) = std::env::var("COURSEGEN_TEST_LLM_MAX_TOKENS") {
        overrides = overrides.set("--llm-max-tokens", max);
    }
    if let Ok(key) = std::env::var("COURSEGEN_TEST_LLM_KEY") {
        overrides = overrides.set("--openai-api-key", key);
    }
    let mut app = TestApp::spawn(overrides).await;
    let store = app.db.store.clone();

    let id = submit(&store, "How ocean tides work", 2).await;
    let course = finished(&store, id, Duration::from_secs(3600)).await;
    app.stop().await;

    assert_eq!(
        course.status,
        Some(CourseStatus::Ready),
        "{:?}",
        course.failure
    );
    let events = store.read_stream(id).await.unwrap();
    eprintln!("\n{model} at {url}:");
    let mut first_lesson = None;
    for pair in events.windows(2) {
        let seconds =
            (pair[1].recorded_at - pair[0].recorded_at).num_milliseconds() as f64 / 1000.0;
        let (step, usage) = match pair[1].to_course_event().unwrap() {
            CourseEvent::OutlineGenerated(o) => {
                eprintln!(
                    "outline: {:?}, lessons {:?}",
                    o.title,
                    o.lessons.iter().map(|l| &l.title).collect::<Vec<_>>()
                );
                ("outline".to_owned(), o.usage)
            }
            CourseEvent::LessonGenerated(l) => {
                let step = format!("lesson {}", l.number);
                let usage = l.usage;
                first_lesson.get_or_insert(l);
                (step, usage)
            }
            _ => continue,
        };
        assert!(usage.total_tokens > 0, "{step}: no tokens recorded");
        eprintln!(
            "{step}: {seconds:.1} s, {} prompt + {} completion = {} tokens{}, {:.1} completion tokens/s",
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
            if usage.estimated { " (estimated)" } else { "" },
            usage.completion_tokens as f64 / seconds.max(1e-3)
        );
    }
    assert!(course.usage.total_tokens > 0);
    let lesson = first_lesson.expect("a lesson");
    assert!(!lesson.content_md.contains("<think>"));
    eprintln!(
        "\nlesson 1, {:?} ({} chars, {} quiz questions):\n{}\n",
        lesson.title,
        lesson.content_md.chars().count(),
        lesson.quiz.len(),
        lesson.content_md.chars().take(1500).collect::<String>()
    );
}
