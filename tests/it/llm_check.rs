//! `coursegen llm check`, run as a user runs it (the binary), against fake
//! servers: what works is printed with exit 0, each reason it does not
//! (unreachable, 401, model not found, no structured output) with exit 1.

use std::process::Output;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fake_llm::mode_of;

/// Runs `coursegen llm check` against `base_url` with model `model`.
async fn llm_check(base_url: String, extra: &[&str]) -> Output {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coursegen"))
            .args([
                "llm",
                "check",
                "--llm-provider",
                "openai",
                "--llm-model",
                "tiny",
            ])
            .arg(format!("--openai-base-url={base_url}"))
            .args(extra)
            .env_remove("OPENAI_API_KEY")
            .env_remove("LLM_STRUCTURED_OUTPUT")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run coursegen")
    })
    .await
    .unwrap()
}

async fn server(
    respond: impl Fn(&Value) -> ResponseTemplate + Send + Sync + 'static,
) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(move |request: &Request| respond(&request.body_json().unwrap()))
        .mount(&server)
        .await;
    server
}

fn reply(content: &str, usage: bool) -> ResponseTemplate {
    let mut body = json!({
        "object": "chat.completion",
        "model": "tiny-q4",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
    });
    if usage {
        body["usage"] = json!({"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36});
    }
    ResponseTemplate::new(200).set_body_json(body)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn llm_check_reports_the_mode_model_latency_and_usage_that_work() {
    // llama-cpp-python: json_schema refused, json_object with a schema taken.
    let server = server(|body| match mode_of(body) {
        "json_schema" => ResponseTemplate::new(500).set_body_json(json!({"error": {
            "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}",
            "type": "internal_server_error"}})),
        _ => reply(r#"{"answer": "ok"}"#, true),
    })
    .await;

    let out = llm_check(format!("{}/v1", server.uri()), &[]).await;

    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("works: tiny-q4"), "{stdout}");
    assert!(
        stdout.contains("structured output mode json_object_schema"),
        "{stdout}"
    );
    assert!(
        stdout.contains("36 tokens (30 prompt + 6 completion)"),
        "{stdout}"
    );
    assert!(stdout.contains(" s, "), "{stdout}");
}

#[tokio::test]
async fn llm_check_marks_usage_it_had_to_estimate() {
    let server = server(|_| reply(r#"{"answer": "ok"}"#, false)).await;

    let out = llm_check(format!("{}/v1", server.uri()), &[]).await;

    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("mode json_schema"), "{stdout}");
    assert!(stdout.contains("estimated"), "{stdout}");
}

#[tokio::test]
async fn llm_check_says_an_unreachable_server_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let out = llm_check(format!("http://127.0.0.1:{port}/v1"), &[]).await;

    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("llm check failed: unreachable"), "{stderr}");
}

#[tokio::test]
async fn llm_check_says_a_rejected_key_is_a_401() {
    let server = server(|_| {
        ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}))
    })
    .await;

    let out = llm_check(
        format!("{}/v1", server.uri()),
        &["--openai-api-key", "sk-wrong"],
    )
    .await;

    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("llm check failed: 401"), "{stderr}");
    assert!(!stderr.contains("sk-wrong"), "{stderr}");
}

#[tokio::test]
async fn llm_check_says_an_unknown_model_is_not_found() {
    // Ollama's answer to a model it has not pulled.
    let server = server(|_| {
        ResponseTemplate::new(404).set_body_json(json!({"error": {
            "message": "model \"tiny\" not found, try pulling it first", "type": "api_error"}}))
    })
    .await;

    let out = llm_check(format!("{}/v1", server.uri()), &[]).await;

    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("llm check failed: model not found"),
        "{stderr}"
    );
    assert!(stderr.contains("try pulling it first"), "{stderr}");
}

#[tokio::test]
async fn llm_check_says_when_no_structured_output_comes_back() {
    // Takes every response_format and answers prose all the same.
    let server = server(|_| reply("Hello! How can I help you today?", true)).await;

    let out = llm_check(format!("{}/v1", server.uri()), &[]).await;

    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("llm check failed: no structured output at all"),
        "{stderr}"
    );
}

#[tokio::test]
async fn llm_check_with_the_offline_generator_has_nothing_to_ask() {
    let out = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coursegen"))
            .args(["llm", "check", "--llm-provider", "offline"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();

    assert!(out.status.success());
    assert!(text(&out.stdout).contains("LLM_PROVIDER is offline"));
}
