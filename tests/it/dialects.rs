//! One test per OpenAI-compatible server dialect: a fake that answers with
//! the status codes and bodies that server sends (its refusals of a
//! `response_format`, its reply shapes, a reasoning model's notes), and the
//! real service generating a 2-lesson course through it to READY with the
//! number of requests that dialect should cost.

use std::sync::Arc;
use std::time::Duration;

use coursegen::domain::{Course, CourseEvent, CourseStatus, LessonGenerated};
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

use crate::app::{Overrides, TestApp};
use crate::fake_llm::{mode_of, Asked, Dialect, Exchange, Script};
use crate::generation::{finished, submit};

const TOPIC: &str = "Tides";

/// A generated course: the app (stopped), its state and its events.
struct Generated {
    app: TestApp,
    course: Course,
    events: Vec<CourseEvent>,
}

impl Generated {
    fn lessons(&self) -> Vec<&LessonGenerated> {
        self.events
            .iter()
            .filter_map(|e| match e {
                CourseEvent::LessonGenerated(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    fn completed_usage(&self) -> coursegen::domain::TokenUsage {
        match self.events.last() {
            Some(CourseEvent::CourseCompleted(done)) => done.usage,
            other => panic!("the course did not complete: {other:?}"),
        }
    }
}

/// Generates a 2-lesson course with `dialect` answering, and `flags` set.
async fn generate(dialect: Dialect, flags: &[(&'static str, &str)]) -> Generated {
    // A model name of its own: wiremock reuses its servers' ports, and the
    // client remembers the mode per base URL and model for the process.
    let model = format!("model-{}", uuid::Uuid::new_v4().simple());
    let mut overrides = Overrides::default()
        .fake_llm(Script {
            dialect: Some(dialect),
            ..Script::default()
        })
        .set("--llm-model", model);
    for (flag, value) in flags {
        overrides = overrides.set(flag, value);
    }
    let mut app = TestApp::spawn(overrides).await;
    let store = app.db.store.clone();
    let id = submit(&store, TOPIC, 2).await;
    let course = finished(&store, id, Duration::from_secs(30)).await;
    app.stop().await;
    let events = store
        .read_stream(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.to_course_event().unwrap())
        .collect();
    Generated {
        app,
        course,
        events,
    }
}

fn dialect(f: impl Fn(&Exchange) -> ResponseTemplate + Send + Sync + 'static) -> Dialect {
    Arc::new(f)
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// A chat completion as OpenAI shapes it (other servers add or drop fields).
fn openai_body(content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test-2024-07-18",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150 },
        "system_fingerprint": "fp_test"
    })
}

fn assert_ready(generated: &Generated, requests: usize, modes: &[&str]) {
    assert_eq!(
        generated.course.status,
        Some(CourseStatus::Ready),
        "{:?}",
        generated.course.failure
    );
    assert_eq!(generated.lessons().len(), 2);
    assert_eq!(generated.app.llm().requests(), requests);
    assert_eq!(generated.app.llm().modes(), modes);
}

/// llama.cpp's `llama-server` before it took `json_schema`: a 500 naming the
/// types it takes, then `json_object` with a schema (its grammar) works.
#[actix_rt::test]
async fn llama_server_refusing_json_schema_is_asked_with_json_object_and_schema() {
    let generated = generate(
        dialect(|x| match mode_of(x.body) {
            "json_schema" => ResponseTemplate::new(500).set_body_json(json!({
                "error": {
                    "code": 500,
                    "message": "response_format type must be one of \"text\" or \"json_object\", but got: json_schema",
                    "type": "server_error"
                }
            })),
            _ => ok(json!({
                "choices": [{"finish_reason": "stop", "index": 0,
                    "message": {"content": x.answer, "role": "assistant"}}],
                "created": 1_700_000_000,
                "model": "gpt-3.5-turbo",
                "object": "chat.completion",
                "usage": {"completion_tokens": 50, "prompt_tokens": 100, "total_tokens": 150},
                "id": "chatcmpl-llama",
                "timings": {"prompt_n": 100, "prompt_ms": 80.5, "predicted_n": 50, "predicted_ms": 900.1}
            })),
        }),
        &[],
    )
    .await;

    // The refusal costs one request, once: the lessons start in the mode learned.
    assert_ready(
        &generated,
        4,
        &[
            "json_schema",
            "json_object_schema",
            "json_object_schema",
            "json_object_schema",
        ],
    );
    let body = &generated.app.llm().bodies()[1];
    let lessons = &body["response_format"]["schema"]["properties"]["lessons"]["prefixItems"];
    assert_eq!(lessons[1]["properties"]["number"]["const"], 2);
    // The grammar asks for the metadata and the elements, and they arrive.
    let outline = &body["response_format"]["schema"]["properties"];
    assert_eq!(outline["difficulty"]["enum"][0], "beginner");
    assert!(outline["tags"].is_object() && outline["learning_outcomes"].is_object());
    let lesson = &generated.app.llm().bodies()[2]["response_format"]["schema"];
    let kinds = lesson["properties"]["elements"]["items"]["anyOf"]
        .as_array()
        .unwrap();
    assert_eq!(kinds.len(), 6, "{lesson}");
    for lesson in generated.lessons() {
        assert_eq!(lesson.elements.len(), 3, "{lesson:?}");
    }
    assert_eq!(generated.completed_usage().total_tokens, 3 * 150);
}

/// llama-cpp-python's server (0.3) validates `response_format.type` with
/// pydantic and wraps the FastAPI validation error in a 500: the body below
/// is the one a real server sent.
fn llama_cpp_python() -> Dialect {
    dialect(|x| {
        match mode_of(x.body) {
        "json_schema" => ResponseTemplate::new(500).set_body_json(json!({
            "error": {
                "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', 'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"/venv/lib/python3.11/site-packages/llama_cpp/server/app.py\", line 376, in create_chat_completion\n    POST /v1/chat/completions",
                "type": "internal_server_error",
                "param": null,
                "code": null
            }
        })),
        _ => ok(json!({
            "id": "chatcmpl-5f8e",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": x.body["model"],
            "choices": [{"index": 0,
                "message": {"role": "assistant", "content": x.answer},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
        })),
    }
    })
}

#[actix_rt::test]
async fn llama_cpp_python_refusing_json_schema_reaches_ready_in_json_object_schema_mode() {
    let generated = generate(llama_cpp_python(), &[]).await;

    assert_ready(
        &generated,
        4,
        &[
            "json_schema",
            "json_object_schema",
            "json_object_schema",
            "json_object_schema",
        ],
    );
}

/// The bug this dialect work began with: the refusal was taken for a
/// transient server error and repeated six times. With the mode fixed, it
/// now fails at once, saying what to set.
#[actix_rt::test]
async fn a_refused_fixed_mode_fails_the_course_at_once_and_says_what_to_set() {
    let generated = generate(
        llama_cpp_python(),
        &[("--llm-structured-output", "json_schema")],
    )
    .await;

    assert_eq!(generated.course.status, Some(CourseStatus::Failed));
    let failure = generated.course.failure.as_ref().unwrap();
    assert!(!failure.retryable);
    assert!(
        failure.error.contains("LLM_STRUCTURED_OUTPUT"),
        "{}",
        failure.error
    );
    assert_eq!(generated.app.llm().requests(), 1);
}

/// LM Studio takes `json_schema` and refuses `json_object` with a 400.
fn lm_studio() -> Dialect {
    dialect(|x| match mode_of(x.body) {
        "json_object" | "json_object_schema" => ResponseTemplate::new(400).set_body_json(
            json!({"error": "'response_format.type' must be 'json_schema' or 'text'"}),
        ),
        _ => {
            let mut body = openai_body(&x.answer);
            body["stats"] = json!({});
            body["model"] = json!("qwen2.5-7b-instruct");
            ok(body)
        }
    })
}

#[actix_rt::test]
async fn lm_studio_takes_json_schema_at_the_first_request() {
    let generated = generate(lm_studio(), &[]).await;

    assert_ready(&generated, 3, &["json_schema"; 3]);
}

/// Told to use `json_object`, which LM Studio refuses: the course fails
/// at once with LM Studio's own words, not after six repeats.
#[actix_rt::test]
async fn lm_studio_told_to_use_json_object_fails_at_once_with_its_message() {
    let generated = generate(lm_studio(), &[("--llm-structured-output", "json_object")]).await;

    assert_eq!(generated.course.status, Some(CourseStatus::Failed));
    assert_eq!(generated.app.llm().requests(), 1);
    let error = &generated.course.failure.as_ref().unwrap().error;
    assert!(error.contains("must be 'json_schema' or 'text'"), "{error}");
}

/// Ollama's `/v1` takes any response_format (it maps a schema to its native
/// `format`), with its own fingerprint and model naming.
#[actix_rt::test]
async fn ollama_v1_takes_json_schema_and_answers_in_its_shape() {
    let generated = generate(
        dialect(|x| {
            ok(json!({
                "id": "chatcmpl-527",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "llama3.2:3b",
                "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0,
                    "message": {"role": "assistant", "content": x.answer},
                    "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
            }))
        }),
        &[],
    )
    .await;

    assert_ready(&generated, 3, &["json_schema"; 3]);
    assert_eq!(generated.completed_usage().total_tokens, 450);
}

/// vLLM takes `json_schema` (guided decoding) and adds its own fields.
#[actix_rt::test]
async fn vllm_takes_json_schema_and_its_extra_fields_are_ignored() {
    let generated = generate(
        dialect(|x| {
            ok(json!({
                "id": "chatcmpl-9d1b",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "Qwen/Qwen2.5-7B-Instruct",
                "choices": [{"index": 0,
                    "message": {"role": "assistant", "reasoning_content": null,
                        "content": x.answer, "tool_calls": []},
                    "logprobs": null, "finish_reason": "stop", "stop_reason": null}],
                "usage": {"prompt_tokens": 100, "total_tokens": 150, "completion_tokens": 50,
                    "prompt_tokens_details": null},
                "prompt_logprobs": null
            }))
        }),
        &[],
    )
    .await;

    assert_ready(&generated, 3, &["json_schema"; 3]);
}

/// LocalAI takes the schema, fails to build its grammar ("Failed generating
/// grammar", in its log only) and runs unconstrained: the model chats
/// around a fenced JSON answer.
#[actix_rt::test]
async fn localai_running_unconstrained_has_its_fenced_json_read() {
    let generated = generate(
        dialect(|x| {
            ok(openai_body(&format!(
                "Sure! Here is the JSON you asked for:\n\n```json\n{}\n```\n\nLet me know if you \
                 need anything else.",
                x.answer
            )))
        }),
        &[],
    )
    .await;

    assert_ready(&generated, 3, &["json_schema"; 3]);
    assert!(generated.lessons()[0].content_md.starts_with("# Lesson 1"));
}

/// OpenAI: strict json_schema, usage counted.
#[actix_rt::test]
async fn openai_takes_a_strict_json_schema_with_counted_usage() {
    let generated = generate(dialect(|x| ok(openai_body(&x.answer))), &[]).await;

    assert_ready(&generated, 3, &["json_schema"; 3]);
    for body in generated.app.llm().bodies() {
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    }
    let usage = generated.completed_usage();
    assert_eq!(usage.total_tokens, 450);
    assert!(!usage.estimated);
}

/// A reasoning model (DeepSeek-R1 style) behind a server that counts no
/// usage: its notes run out of budget on the first outline, come before
/// the JSON after that, fill `reasoning_content` with `content: null` for
/// lesson 1, and leak into the lesson text of lesson 2.
#[actix_rt::test]
async fn a_reasoning_model_has_its_notes_stripped_its_budget_grown_and_its_usage_estimated() {
    let generated = generate(
        dialect(|x| {
            let message = match (x.asked, x.repeat) {
                (Asked::Outline { .. }, 0) => {
                    return ok(json!({"choices": [{"index": 0, "finish_reason": "length",
                        "message": {"role": "assistant",
                            "content": "<think>\nOkay, the user wants a course on tides. Let me think about"}}]}))
                }
                (Asked::Outline { .. }, _) => json!({"role": "assistant",
                    "content": format!("<think>\nTwo lessons: the Moon, then the Sun.\n</think>\n\n{}", x.answer)}),
                (Asked::Lesson { number: 1, .. }, _) => json!({"role": "assistant", "content": null,
                    "reasoning_content": format!("<think>Start with the Moon's pull.</think>{}", x.answer)}),
                (Asked::Translation { .. }, _) => unreachable!("no subtitles are asked for"),
                (Asked::Lesson { .. }, _) => {
                    let mut answer: Value = serde_json::from_str(&x.answer).unwrap();
                    answer["content_md"] = json!(format!(
                        "<think>private notes on lesson 2</think>\n{}",
                        answer["content_md"].as_str().unwrap()
                    ));
                    json!({"role": "assistant",
                        "content": format!("<think>private notes</think>\n{answer}")})
                }
            };
            ok(json!({"choices": [{"index": 0, "finish_reason": "stop", "message": message}]}))
        }),
        &[],
    )
    .await;

    assert_ready(&generated, 4, &["json_schema"; 4]);
    let budgets: Vec<Value> = generated
        .app
        .llm()
        .bodies()
        .iter()
        .map(|b| b["max_tokens"].clone())
        .collect();
    assert_eq!(budgets[..2], [json!(2048), json!(4096)]);
    for lesson in generated.lessons() {
        assert!(
            !lesson.content_md.contains("think"),
            "{}",
            lesson.content_md
        );
        assert!(
            lesson.content_md.starts_with("# Lesson"),
            "{}",
            lesson.content_md
        );
        assert!(lesson.usage.estimated && lesson.usage.total_tokens > 0);
    }
    let usage = generated.completed_usage();
    assert!(usage.estimated, "{usage:?}");
    assert!(usage.total_tokens > 0);
}

/// A server that takes the schema and ignores it: wrong shapes first, a
/// valid answer after the re-asks that carry the validation errors.
#[actix_rt::test]
async fn a_server_ignoring_the_schema_is_re_asked_with_the_validation_errors() {
    let generated = generate(
        dialect(|x| {
            let content = match (x.asked, x.repeat) {
                (Asked::Outline { .. }, 0) => {
                    json!({"course": {"name": "Tides"}, "lessons": 2}).to_string()
                }
                (Asked::Outline { .. }, 1) => {
                    let mut answer: Value = serde_json::from_str(&x.answer).unwrap();
                    let first = answer["lessons"][0].clone();
                    answer["lessons"].as_array_mut().unwrap().push(first);
                    answer.to_string()
                }
                (Asked::Lesson { number: 1, .. }, 0) => {
                    let mut answer: Value = serde_json::from_str(&x.answer).unwrap();
                    answer["quiz"].as_array_mut().unwrap().truncate(1);
                    answer.to_string()
                }
                _ => x.answer.clone(),
            };
            ok(openai_body(&content))
        }),
        &[],
    )
    .await;

    assert_ready(&generated, 6, &["json_schema"; 6]);
    let bodies = generated.app.llm().bodies();
    let complaint = |i: usize| {
        bodies[i]["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(complaint(1).contains("required shape"), "{}", complaint(1));
    assert!(
        complaint(2).contains("exactly 2 lessons, it has 3"),
        "{}",
        complaint(2)
    );
    assert!(
        complaint(4).contains("the quiz must have 3 to 5 questions, it has 1"),
        "{}",
        complaint(4)
    );
    assert_eq!(generated.completed_usage().total_tokens, 6 * 150);
}
