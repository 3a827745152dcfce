//! The chaos soak's language model: an OpenAI-compatible
//! `/{caller}/v1/chat/completions` on 127.0.0.1 that reads each prompt like
//! a model would (which course, the outline or which lesson), records when
//! the call started and for what, and answers a valid structured answer
//! after a fixed latency. `caller` names the `serve` process (and its
//! incarnation) whose `OPENAI_BASE_URL` it is, so every call is attributed.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// What a call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Step {
    Outline,
    Lesson(u32),
}

/// One model call as the fake saw it.
#[derive(Debug, Clone)]
pub(super) struct Call {
    /// When the request arrived (wall clock, comparable with `recorded_at`).
    pub started: DateTime<Utc>,
    /// The `serve` incarnation that made it (its base URL's first segment).
    pub caller: String,
    /// The course's topic, unique per course in a soak.
    pub topic: String,
    pub step: Step,
}

#[derive(Clone)]
struct State {
    latency: Duration,
    calls: Arc<Mutex<Vec<Call>>>,
}

/// The running fake.
pub(super) struct FakeModel {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    handle: ServerHandle,
}

impl FakeModel {
    /// Starts the fake on a free loopback port. Must be called inside an actix System.
    ///
    /// # Errors
    /// No port could be bound.
    pub(super) fn start(latency: Duration) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = State {
            latency,
            calls: Arc::default(),
        };
        let calls = state.calls.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(web::JsonConfig::default().limit(4 << 20))
                .route(
                    "/{caller}/v1/chat/completions",
                    web::post().to(chat_completion),
                )
        })
        .workers(2)
        .backlog(1024)
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(Self {
            port,
            calls,
            handle,
        })
    }

    /// The `OPENAI_BASE_URL` for the `serve` incarnation `caller`.
    pub(super) fn base_url(&self, caller: &str) -> String {
        format!("http://127.0.0.1:{}/{caller}/v1", self.port)
    }

    /// Every call so far, in arrival order.
    pub(super) fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    /// Stops the server.
    pub(super) async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn chat_completion(
    state: web::Data<State>,
    caller: web::Path<String>,
    body: web::Json<Value>,
) -> HttpResponse {
    let started = Utc::now();
    let user = user_message(&body);
    let Some((topic, step, lessons)) = read_prompt(user) else {
        return HttpResponse::BadRequest().json(json!({
            "error": { "message": "the chaos model reads only outline and lesson prompts",
                       "type": "invalid_request_error", "code": null }
        }));
    };
    state.calls.lock().expect("calls lock").push(Call {
        started,
        caller: caller.into_inner(),
        topic: topic.clone(),
        step,
    });
    tokio::time::sleep(state.latency).await;
    let content = match step {
        Step::Outline => outline_answer(&topic, lessons),
        Step::Lesson(n) => lesson_answer(n),
    };
    HttpResponse::Ok().json(json!({
        "id": "chatcmpl-chaos",
        "object": "chat.completion",
        "created": started.timestamp(),
        "model": "chaos",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150 }
    }))
}

fn user_message(body: &Value) -> &str {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
}

fn line_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(prefix))
}

/// The topic, the step and (for an outline) the lesson count a prompt asks for.
fn read_prompt(user: &str) -> Option<(String, Step, u32)> {
    if let Some(topic) = line_after(user, "Plan a course on: ") {
        let lessons = line_after(user, "Number of lessons: exactly ")?
            .trim_end_matches('.')
            .parse()
            .ok()?;
        return Some((topic.trim().to_owned(), Step::Outline, lessons));
    }
    let topic = line_after(user, "Topic: ")?.trim().to_owned();
    let number = line_after(user, "Write lesson ")?
        .trim_end_matches('.')
        .parse()
        .ok()?;
    Some((topic, Step::Lesson(number), 0))
}

fn outline_answer(topic: &str, lessons: u32) -> String {
    json!({
        "title": format!("All about {topic}"),
        "description": format!("A course on {topic}."),
        "lessons": (1..=lessons).map(|n| json!({
            "number": n,
            "title": format!("{topic}, part {n}"),
            "concepts": ["first idea", "second idea"],
            "objectives": ["Explain the first idea"]
        })).collect::<Vec<_>>(),
        "tags": ["Chaos", topic],
        "difficulty": "beginner",
        "learning_outcomes": ["Use the first idea"]
    })
    .to_string()
}

fn lesson_answer(number: u32) -> String {
    let question = |q: &str| {
        json!({
            "question": q,
            "options": ["A", "B", "C"],
            "answer_index": 1,
            "explanation": "B is right."
        })
    };
    json!({
        "number": number,
        "title": format!("Lesson {number}"),
        "content_md": format!("# Lesson {number}\n\n## Idea\n\nSome teaching."),
        "sections": [{ "heading": "Idea", "body": "Some teaching." }],
        "quiz": [question("One?"), question("Two?"), question("Three?")],
        "sources": [{ "title": "A textbook", "url": null }],
        "elements": [
            { "id": format!("l{number}-tf"), "kind": "true_false", "question": "Water is wet",
              "answer": true, "explanation": "It is." }
        ]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_read_as_outline_or_lesson_of_their_topic() {
        let outline = "Plan a course on: Chaos 7\nNumber of lessons: exactly 3.\n";
        assert_eq!(
            read_prompt(outline),
            Some(("Chaos 7".into(), Step::Outline, 3))
        );
        let lesson = "Topic: Chaos 7\nWrite lesson 2.\n";
        assert_eq!(
            read_prompt(lesson),
            Some(("Chaos 7".into(), Step::Lesson(2), 0))
        );
        assert_eq!(read_prompt("Translate this"), None);
    }
}
