//! The LLM layer: the real OpenAI client against a fake OpenAI-compatible
//! server (wiremock, speaking `/v1/chat/completions`), and the offline
//! generator against the domain's own rules. No database needed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coursegen::domain::{
    decide, evolve, Command, Course, CourseRequest, CourseRequested, CourseStatus,
    OutlineGenerated, RawCourseRequest, TokenUsage,
};
use coursegen::llm::{
    validate, LlmClient, LlmError, OfflineClient, OpenAiClient, OpenAiConfig, RetryPolicy,
    StructuredOutput,
};
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const MODEL: &str = "gpt-test";

/// Answers requests in order with `responses` (the last one repeats) and
/// remembers when each request arrived.
struct Script {
    responses: Vec<ResponseTemplate>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().unwrap();
        arrivals.push(Instant::now());
        let i = (arrivals.len() - 1).min(self.responses.len() - 1);
        self.responses[i].clone()
    }
}

/// A fake LLM server answering with `responses`, and the arrival times.
async fn fake_llm(responses: Vec<ResponseTemplate>) -> (MockServer, Arc<Mutex<Vec<Instant>>>) {
    let server = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Script {
            responses,
            arrivals: arrivals.clone(),
        })
        .mount(&server)
        .await;
    (server, arrivals)
}

fn config(server: &MockServer) -> OpenAiConfig {
    OpenAiConfig {
        base_url: format!("{}/v1", server.uri()),
        api_key: Some("sk-test".into()),
        model: MODEL.into(),
        timeout: Duration::from_millis(500),
        retry: RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        },
        structured_output: StructuredOutput::Auto,
        max_tokens: 16384,
    }
}

fn client(server: &MockServer) -> OpenAiClient {
    OpenAiClient::new(config(server)).unwrap()
}

async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.body_json().unwrap())
        .collect()
}

fn request(topic: &str, lessons: i64, grade: Option<&str>) -> CourseRequest {
    CourseRequest::parse(RawCourseRequest {
        request_id: Some(Uuid::new_v4().to_string()),
        user_id: Some(Uuid::new_v4().to_string()),
        topic: Some(topic.into()),
        grade_level: grade.map(Into::into),
        num_lessons: Some(lessons),
        language: Some("en".into()),
        source_filter: None,
        ..Default::default()
    })
    .unwrap()
}

fn course(lessons: i64) -> CourseRequested {
    request("Photosynthesis", lessons, Some("Grade 7")).into_event()
}

/// A chat completion as OpenAI sends it.
fn completion_with(
    content: &str,
    finish_reason: &str,
    usage: Option<(u64, u64)>,
) -> ResponseTemplate {
    let mut body = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test-2024-07-18",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "logprobs": null,
            "finish_reason": finish_reason
        }],
        "system_fingerprint": "fp_test"
    });
    if let Some((prompt, completion)) = usage {
        body["usage"] = json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion
        });
    }
    ResponseTemplate::new(200).set_body_json(body)
}

fn completion(content: &str) -> ResponseTemplate {
    completion_with(content, "stop", Some((100, 50)))
}

fn error(status: u16, message: &str, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": { "message": message, "type": code, "param": null, "code": code }
    }))
}

fn outline_answer(lessons: u32) -> String {
    json!({
        "title": "Light into Life: Photosynthesis",
        "description": "How plants turn light into sugar.",
        "lessons": (1..=lessons).map(|n| json!({
            "number": n,
            "title": format!("Lesson {n} on photosynthesis"),
            "concepts": ["chlorophyll", "light"],
            "objectives": ["Explain how leaves capture light"]
        })).collect::<Vec<_>>()
    })
    .to_string()
}

fn lesson_answer(number: u32, answer_index: u32) -> String {
    let question = |q: &str| {
        json!({
            "question": q,
            "options": ["Oxygen", "Carbon dioxide", "Nitrogen"],
            "answer_index": answer_index,
            "explanation": "Plants take in carbon dioxide."
        })
    };
    json!({
        "number": number,
        "title": "Capturing light",
        "content_md": "# Capturing light\n\n## Chlorophyll\n\nLeaves are green because...",
        "sections": [{ "heading": "Chlorophyll", "body": "Leaves are green because..." }],
        "quiz": [question("What do plants take in?"), question("Which gas is used?"), question("What enters the leaf?")],
        "sources": [
            { "title": "Campbell Biology", "url": null },
            { "title": "Photosynthesis", "url": "https://en.wikipedia.org/wiki/Photosynthesis" }
        ]
    })
    .to_string()
}

fn valid_outline(lessons: u32) -> OutlineGenerated {
    let answer: Value = serde_json::from_str(&outline_answer(lessons)).unwrap();
    OutlineGenerated {
        title: answer["title"].as_str().unwrap().into(),
        description: answer["description"].as_str().unwrap().into(),
        lessons: serde_json::from_value(answer["lessons"].clone()).unwrap(),
        model: MODEL.into(),
        usage: TokenUsage::default(),
        ..Default::default()
    }
}

fn last_message(body: &Value) -> &Value {
    body["messages"].as_array().unwrap().last().unwrap()
}

#[tokio::test]
async fn outline_request_uses_a_strict_schema_and_records_usage() {
    let (server, _) = fake_llm(vec![completion(&outline_answer(3))]).await;

    let outline = client(&server).outline(&course(3)).await.unwrap();

    assert_eq!(outline.title, "Light into Life: Photosynthesis");
    assert_eq!(outline.lessons.len(), 3);
    assert_eq!(outline.lessons[2].concepts, vec!["chlorophyll", "light"]);
    assert_eq!(outline.model, MODEL);
    assert_eq!(
        outline.usage,
        TokenUsage {
            prompt_tokens: 100,
            completion_tokens: 50,
            total_tokens: 150,
            estimated: false,
        }
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].headers.get("authorization").unwrap(),
        "Bearer sk-test"
    );
    let body: Value = requests[0].body_json().unwrap();
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["role"], "user");
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains("Photosynthesis") && user.contains("Grade 7") && user.contains("exactly 3")
    );
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    assert_eq!(
        format["json_schema"]["schema"]["additionalProperties"],
        false
    );
    assert_eq!(format["json_schema"]["name"], "course_outline");
}

#[tokio::test]
async fn lesson_answer_maps_onto_the_lesson_event() {
    let (server, _) = fake_llm(vec![completion(&lesson_answer(2, 1))]).await;
    let outline = valid_outline(3);

    let lesson = client(&server)
        .lesson(&course(3), &outline, 2)
        .await
        .unwrap();

    assert_eq!(lesson.number, 2);
    assert_eq!(lesson.title, "Capturing light");
    assert!(lesson.content_md.starts_with("# Capturing light"));
    assert_eq!(lesson.sections[0].heading, "Chlorophyll");
    assert_eq!(lesson.quiz.len(), 3);
    assert_eq!(lesson.quiz[0].answer_index, 1);
    assert_eq!(lesson.sources[0].url, None);
    assert_eq!(
        lesson.sources[1].url.as_deref(),
        Some("https://en.wikipedia.org/wiki/Photosynthesis")
    );
    assert_eq!(lesson.model, MODEL);
    assert_eq!(lesson.usage.total_tokens, 150);
    let body = &bodies(&server).await[0];
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("Write lesson 2") && user.contains("Lesson 2 on photosynthesis"));
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
}

#[tokio::test]
async fn no_api_key_sends_no_authorization_and_absent_usage_is_estimated() {
    let (server, _) = fake_llm(vec![completion_with(&outline_answer(2), "stop", None)]).await;
    let client = OpenAiClient::new(OpenAiConfig {
        api_key: None,
        ..config(&server)
    })
    .unwrap();

    let outline = client.outline(&course(2)).await.unwrap();

    // About four characters a token, of the prompt and of the answer.
    assert!(outline.usage.estimated);
    let answer_tokens = outline_answer(2).len() as u64 / 4;
    assert!(
        (answer_tokens..=answer_tokens + 1).contains(&outline.usage.completion_tokens),
        "{:?}",
        outline.usage
    );
    assert!(outline.usage.prompt_tokens > 100, "{:?}", outline.usage);
    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn rate_limited_request_waits_for_retry_after_then_succeeds() {
    let (server, arrivals) = fake_llm(vec![
        error(429, "Rate limit reached", "rate_limit_exceeded").insert_header("retry-after", "1"),
        completion(&outline_answer(2)),
    ])
    .await;

    let outline = client(&server).outline(&course(2)).await.unwrap();

    assert_eq!(outline.lessons.len(), 2);
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1] - arrivals[0];
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (server, arrivals) = fake_llm(vec![
        ResponseTemplate::new(500),
        error(502, "Bad gateway", "server_error"),
        ResponseTemplate::new(503).set_body_string("<html>overloaded</html>"),
        completion(&outline_answer(2)),
    ])
    .await;

    let outline = client(&server).outline(&course(2)).await.unwrap();

    assert_eq!(outline.lessons.len(), 2);
    assert_eq!(arrivals.lock().unwrap().len(), 4);
    assert_eq!(outline.usage.total_tokens, 150);
}

#[tokio::test]
async fn exhausted_retries_fail_as_retryable() {
    let (server, arrivals) = fake_llm(vec![error(503, "Overloaded", "server_error")]).await;
    let mut config = config(&server);
    config.retry.max_retries = 2;

    let err = OpenAiClient::new(config)
        .unwrap()
        .outline(&course(2))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            LlmError::Server {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.retryable());
    assert_eq!(arrivals.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn timed_out_request_is_retried() {
    let (server, arrivals) = fake_llm(vec![
        completion(&outline_answer(2)).set_delay(Duration::from_secs(3)),
        completion(&outline_answer(2)),
    ])
    .await;
    let started = Instant::now();

    let outline = client(&server).outline(&course(2)).await.unwrap();

    assert_eq!(outline.lessons.len(), 2);
    assert_eq!(arrivals.lock().unwrap().len(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not time out"
    );
    // Only the answered request's tokens count.
    assert_eq!(outline.usage.total_tokens, 150);
}

#[tokio::test]
async fn rejected_api_key_fails_at_once_and_is_not_retryable() {
    let (server, arrivals) = fake_llm(vec![
        error(
            401,
            "Incorrect API key provided: sk-test.",
            "invalid_api_key",
        ),
        completion(&outline_answer(2)),
    ])
    .await;

    let err = client(&server).outline(&course(2)).await.unwrap_err();

    assert!(
        matches!(err, LlmError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.retryable());
    assert!(
        err.to_string().contains("rejected the API key (401)"),
        "{err}"
    );
    assert_eq!(arrivals.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_request_and_unknown_model_are_not_retried() {
    for (status, expected) in [(400, "rejected the request (400)"), (404, "no such model")] {
        let (server, arrivals) = fake_llm(vec![
            error(
                status,
                "The model `gpt-test` does not exist",
                "model_not_found",
            ),
            completion(&outline_answer(2)),
        ])
        .await;

        let err = client(&server).outline(&course(2)).await.unwrap_err();

        assert!(!err.retryable(), "{status}: {err:?}");
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(arrivals.lock().unwrap().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn exhausted_quota_is_not_retried_even_on_429() {
    let (server, arrivals) = fake_llm(vec![
        error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
        )
        .insert_header("retry-after", "0"),
        completion(&outline_answer(2)),
    ])
    .await;

    let err = client(&server).outline(&course(2)).await.unwrap_err();

    assert!(matches!(err, LlmError::InsufficientQuota { .. }), "{err:?}");
    assert!(!err.retryable());
    assert_eq!(arrivals.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_json_is_re_asked_once_with_the_validation_error() {
    let (server, _) = fake_llm(vec![
        completion("Sure! Here is your course outline: Lesson 1 ..."),
        completion(&outline_answer(2)),
    ])
    .await;

    let outline = client(&server).outline(&course(2)).await.unwrap();

    assert_eq!(outline.lessons.len(), 2);
    assert_eq!(
        outline.usage.total_tokens, 300,
        "both questions are paid for"
    );
    let bodies = bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    let messages = bodies[1]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(
        messages[2]["content"],
        "Sure! Here is your course outline: Lesson 1 ..."
    );
    assert_eq!(messages[3]["role"], "user");
    assert!(messages[3]["content"]
        .as_str()
        .unwrap()
        .contains("not JSON"));
}

#[tokio::test]
async fn answers_failing_validation_three_times_give_up_after_three_requests() {
    // Asked for 4 lessons, the model keeps planning 3.
    let (server, arrivals) = fake_llm(vec![completion(&outline_answer(3))]).await;

    let err = client(&server).outline(&course(4)).await.unwrap_err();

    assert!(
        matches!(err, LlmError::InvalidAnswer { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(!err.retryable());
    assert!(err.to_string().contains("exactly 4 lessons"), "{err}");
    assert_eq!(arrivals.lock().unwrap().len(), 3);
    let bodies = bodies(&server).await;
    let complaint = last_message(&bodies[2])["content"].as_str().unwrap();
    assert!(
        complaint.contains("exactly 4 lessons, it has 3"),
        "{complaint}"
    );
}

#[tokio::test]
async fn quiz_answer_out_of_range_is_re_asked() {
    let (server, _) = fake_llm(vec![
        completion(&lesson_answer(1, 3)),
        completion(&lesson_answer(1, 2)),
    ])
    .await;

    let lesson = client(&server)
        .lesson(&course(2), &valid_outline(2), 1)
        .await
        .unwrap();

    assert_eq!(lesson.quiz[0].answer_index, 2);
    let bodies = bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    let complaint = last_message(&bodies[1])["content"].as_str().unwrap();
    assert!(complaint.contains("answer_index 3"), "{complaint}");
}

#[tokio::test]
async fn truncated_answer_is_asked_again_with_twice_the_budget() {
    let full = outline_answer(2);
    let (server, _) = fake_llm(vec![
        completion_with(&full[..full.len() / 2], "length", Some((100, 2048))),
        completion(&full),
    ])
    .await;

    let outline = client(&server).outline(&course(2)).await.unwrap();

    assert_eq!(outline.lessons.len(), 2);
    assert_eq!(outline.usage.completion_tokens, 2048 + 50);
    let bodies = bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["max_tokens"], 2048);
    assert_eq!(bodies[1]["max_tokens"], 4096);
    // The same question, not a complaint about the cut-off half.
    assert_eq!(bodies[1]["messages"], bodies[0]["messages"]);
}

#[tokio::test]
async fn truncated_answer_at_llm_max_tokens_is_re_asked_for_a_shorter_one() {
    let full = outline_answer(2);
    let (server, _) = fake_llm(vec![
        completion_with(&full[..full.len() / 2], "length", Some((100, 1000))),
        completion_with(&full[..full.len() / 2], "length", Some((100, 1500))),
        completion(&full),
    ])
    .await;
    let client = OpenAiClient::new(OpenAiConfig {
        max_tokens: 1500,
        ..config(&server)
    })
    .unwrap();

    client.outline(&course(2)).await.unwrap();

    let bodies = bodies(&server).await;
    let budgets: Vec<_> = bodies.iter().map(|b| b["max_tokens"].clone()).collect();
    assert_eq!(budgets, [json!(1500), json!(1500), json!(1500)]);
    let complaint = last_message(&bodies[1])["content"].as_str().unwrap();
    assert!(complaint.contains("cut off"), "{complaint}");
}

#[tokio::test]
async fn truncated_answer_that_is_valid_json_is_still_re_asked() {
    // A cut-off answer may happen to parse; "length" alone disqualifies it.
    let (server, _) = fake_llm(vec![
        completion_with(&outline_answer(2), "length", Some((10, 10))),
        completion(&outline_answer(2)),
    ])
    .await;

    client(&server).outline(&course(2)).await.unwrap();

    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// Decides `command` and folds its events into `course`.
fn apply(course: &mut Course, command: Command) {
    for event in decide(course, command).expect("the domain accepts the step") {
        *course = evolve(std::mem::take(course), &event);
    }
}

/// Records the whole course through the domain's decider, as the course actor will.
async fn generate_with(
    client: &dyn LlmClient,
    request: CourseRequest,
) -> (Course, Vec<coursegen::domain::LessonGenerated>) {
    let requested = request.clone().into_event();
    let mut course = Course::default();
    apply(&mut course, Command::Request(request));
    apply(
        &mut course,
        Command::StartGeneration {
            model: client.model().to_owned(),
        },
    );
    let outline = client.outline(&requested).await.unwrap();
    validate::outline(&requested, &outline).unwrap();
    apply(&mut course, Command::RecordOutline(outline.clone()));
    let mut lessons = Vec::new();
    for plan in &outline.lessons {
        let lesson = client
            .lesson(&requested, &outline, plan.number)
            .await
            .unwrap();
        validate::lesson(&outline, plan.number, &lesson).unwrap();
        apply(&mut course, Command::RecordLesson(lesson.clone()));
        lessons.push(lesson);
    }
    apply(&mut course, Command::Complete);
    (course, lessons)
}

#[tokio::test]
async fn offline_course_passes_validation_and_the_domain() {
    let offline = OfflineClient::default();
    for (topic, lessons, grade) in [
        ("Photosynthesis", 4, Some("Grade 4")),
        ("the French Revolution", 1, None),
        ("Rust ownership and borrowing", 20, Some("university")),
    ] {
        let (course, generated) = generate_with(&offline, request(topic, lessons, grade)).await;

        assert_eq!(course.status, Some(CourseStatus::Ready), "{topic}");
        assert_eq!(generated.len(), lessons as usize);
        assert!(course.usage.total_tokens > 0);
        assert_eq!(course.outline.as_ref().unwrap().model, "offline");
        for lesson in &generated {
            assert_eq!(lesson.model, "offline");
            assert!(
                lesson.content_md.contains(topic),
                "lesson {} of {topic}",
                lesson.number
            );
            let size = lesson.content_md.len();
            assert!(
                (3_000..=6_500).contains(&size),
                "lesson {} is {size} bytes",
                lesson.number
            );
            assert!(lesson.usage.prompt_tokens > 100 && lesson.usage.completion_tokens > 500);
            assert!(!lesson.sources.is_empty());
            if let Some(grade) = grade {
                assert!(lesson.content_md.contains(grade));
            }
        }
        let distinct: std::collections::HashSet<_> =
            generated.iter().map(|l| &l.content_md).collect();
        assert_eq!(distinct.len(), generated.len(), "lessons differ");
    }
}

#[tokio::test]
async fn offline_generator_is_deterministic() {
    let offline = OfflineClient::default();
    let req = course(5);
    let first = offline.outline(&req).await.unwrap();
    let again = offline.outline(&req).await.unwrap();
    assert_eq!(first, again);
    assert!(first.title.contains("Photosynthesis"));
    for n in 1..=5 {
        assert_eq!(
            offline.lesson(&req, &first, n).await.unwrap(),
            offline.lesson(&req, &first, n).await.unwrap()
        );
    }
    let other = OfflineClient::default()
        .outline(&request("Volcanoes", 5, Some("Grade 7")).into_event())
        .await
        .unwrap();
    assert_ne!(first.lessons, other.lessons);
}

#[tokio::test]
async fn offline_lessons_on_technical_topics_have_code_and_quiz_sizes_vary() {
    let offline = OfflineClient::default();
    let req = request("Python programming", 6, Some("Grade 10")).into_event();
    let outline = offline.outline(&req).await.unwrap();
    let mut quiz_sizes = std::collections::BTreeSet::new();
    for n in 1..=6 {
        let lesson = offline.lesson(&req, &outline, n).await.unwrap();
        assert!(lesson.content_md.contains("```python"), "lesson {n}");
        assert!(
            lesson.content_md.contains("## Exercise") && lesson.content_md.contains("### Solution")
        );
        quiz_sizes.insert(lesson.quiz.len());
    }
    assert_eq!(quiz_sizes, [3, 4, 5].into());
    let non_technical = offline
        .lesson(&course(2), &offline.outline(&course(2)).await.unwrap(), 1)
        .await
        .unwrap();
    assert!(!non_technical.content_md.contains("```"));
}

#[tokio::test]
async fn offline_latency_is_simulated() {
    let offline = OfflineClient::new(Duration::from_millis(200));
    let started = Instant::now();
    offline.outline(&course(1)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn unreachable_server_fails_as_a_retryable_connection_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = OpenAiClient::new(OpenAiConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        api_key: None,
        model: MODEL.into(),
        timeout: Duration::from_millis(500),
        retry: RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        },
        structured_output: StructuredOutput::Auto,
        max_tokens: 16384,
    })
    .unwrap();

    let err = client.outline(&course(2)).await.unwrap_err();

    assert!(
        matches!(err, LlmError::Connection { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.retryable());
}

/// llama-cpp-python's refusal of `json_schema` (a 500 around a FastAPI
/// validation error), then any later request answered.
fn refusing_json_schema(content: String) -> impl Fn(&Request) -> ResponseTemplate {
    move |request: &Request| {
        let body: Value = request.body_json().unwrap();
        if body["response_format"]["type"] == "json_schema" {
            return ResponseTemplate::new(500).set_body_json(json!({"error": {
                "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}",
                "type": "internal_server_error", "param": null, "code": null}}));
        }
        completion(&content)
    }
}

fn unique_model() -> String {
    format!("model-{}", Uuid::new_v4().simple())
}

#[tokio::test]
async fn a_refused_response_format_steps_down_at_once_even_with_no_retries_left() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(refusing_json_schema(outline_answer(2)))
        .mount(&server)
        .await;
    let model = unique_model();
    let mut config = OpenAiConfig {
        model: model.clone(),
        ..config(&server)
    };
    config.retry.max_retries = 0;
    config.retry.base_delay = Duration::from_secs(3600);

    let outline = OpenAiClient::new(config.clone())
        .unwrap()
        .outline(&course(2))
        .await
        .unwrap();

    assert_eq!(outline.lessons.len(), 2);
    let bodies = bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1]["response_format"]["type"], "json_object");
    assert!(bodies[1]["response_format"]["schema"].is_object());
    // The schema is in the prompt too, for the model to read.
    let system = bodies[1]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("JSON schema") && system.contains("\"lessons\""),
        "{system}"
    );

    // Another client of the same server and model starts in the mode learned.
    OpenAiClient::new(config)
        .unwrap()
        .outline(&course(2))
        .await
        .unwrap();
    let bodies = self::bodies(&server).await;
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[2]["response_format"]["type"], "json_object");
}

#[tokio::test]
async fn a_learned_mode_the_server_no_longer_takes_restarts_from_the_strictest() {
    // First a server refusing json_schema teaches json_object_schema ...
    let server = MockServer::start().await;
    let refusing = Mock::given(method("POST"))
        .respond_with(refusing_json_schema(outline_answer(2)))
        .mount_as_scoped(&server)
        .await;
    let config = OpenAiConfig {
        model: unique_model(),
        ..config(&server)
    };
    OpenAiClient::new(config.clone())
        .unwrap()
        .outline(&course(2))
        .await
        .unwrap();
    drop(refusing);
    // ... then, on the same URL, one like LM Studio refuses json_object.
    Mock::given(method("POST"))
        .respond_with(|request: &Request| {
            let body: Value = request.body_json().unwrap();
            if body["response_format"]["type"] == "json_object" {
                return ResponseTemplate::new(400).set_body_json(
                    json!({"error": "'response_format.type' must be 'json_schema' or 'text'"}),
                );
            }
            completion(&outline_answer(2))
        })
        .mount(&server)
        .await;

    OpenAiClient::new(config)
        .unwrap()
        .outline(&course(2))
        .await
        .unwrap();

    let modes: Vec<Value> = bodies(&server)
        .await
        .iter()
        .map(|b| b["response_format"]["type"].clone())
        .collect();
    assert_eq!(
        modes,
        ["json_schema", "json_object", "json_object", "json_schema"].map(|m| json!(m))
    );
}

#[tokio::test]
async fn an_answer_cut_off_by_the_servers_own_limit_is_re_asked_not_given_more_budget() {
    // 700 tokens of the 2048 asked for: the server's context window ended it.
    let full = outline_answer(2);
    let (server, _) = fake_llm(vec![
        completion_with(&full[..full.len() / 2], "length", Some((7000, 700))),
        completion(&full),
    ])
    .await;

    client(&server).outline(&course(2)).await.unwrap();

    let bodies = bodies(&server).await;
    assert_eq!(bodies[1]["max_tokens"], bodies[0]["max_tokens"]);
    let complaint = last_message(&bodies[1])["content"].as_str().unwrap();
    assert!(complaint.contains("cut off"), "{complaint}");
}
