//! A fake OpenAI-compatible server for generation tests: a wiremock server on
//! `/v1/chat/completions` that reads each request like a model would (which
//! course, outline or which lesson) and answers with a valid structured
//! answer, after an optional delay, unless a scripted failure comes first.
//! A [`Dialect`] can take over the answering, to imitate a particular
//! server (its refusals of a `response_format`, its reply shapes).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What a request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Asked {
    Outline { topic: String },
    Lesson { topic: String, number: u32 },
    Translation { lesson: u32, language: String },
}

/// Shared record of what the fake saw.
#[derive(Default)]
pub struct Seen {
    pub asked: Vec<(Instant, Asked)>,
    /// The structured-output mode of each request (see [`mode_of`]).
    pub modes: Vec<&'static str>,
    /// The request bodies, in order.
    pub bodies: Vec<Value>,
}

/// One request, as a [`Dialect`] sees it.
pub struct Exchange<'a> {
    pub body: &'a Value,
    pub asked: &'a Asked,
    /// Times the same thing was asked before (0 the first time).
    pub repeat: usize,
    /// A valid answer (JSON text) to what was asked.
    pub answer: String,
}

/// Answers every request (after `first` and `always`) in a server's manner.
pub type Dialect = Arc<dyn Fn(&Exchange) -> ResponseTemplate + Send + Sync>;

/// The structured-output mode a request asked in, named as
/// `LLM_STRUCTURED_OUTPUT` names it.
pub fn mode_of(body: &Value) -> &'static str {
    let format = &body["response_format"];
    match format["type"].as_str() {
        None => "none",
        Some("json_schema") => "json_schema",
        Some("json_object") if format.get("schema").is_some() => "json_object_schema",
        Some("json_object") => "json_object",
        Some(_) => "other",
    }
}

/// Behaviour of the fake.
#[derive(Clone, Default)]
pub struct Script {
    /// Served, in order, to the first requests instead of an answer.
    pub first: Vec<ResponseTemplate>,
    /// Served to every request instead of an answer (after `first`).
    pub always: Option<ResponseTemplate>,
    /// Delay of every answer.
    pub delay: Duration,
    /// Extra delay for these lesson numbers.
    pub slow_lessons: HashMap<u32, Duration>,
    /// Lesson numbers that always get this response instead of an answer.
    pub failing_lessons: HashMap<u32, ResponseTemplate>,
    /// The server imitated, if not a well-behaved OpenAI.
    pub dialect: Option<Dialect>,
    /// Holds the first request for one lesson until the test opens it.
    pub gate: Option<Gate>,
    /// Extra delay for translations of these lesson numbers.
    pub slow_translations: HashMap<u32, Duration>,
    /// The markdown of every lesson, instead of a short default.
    pub lesson_markdown: Option<String>,
    /// The interactive elements of every lesson (a JSON array), instead of
    /// a code block, an exercise and a true / false statement.
    pub lesson_elements: Option<Value>,
}

/// Holds the first request for lesson `lesson` in flight until [`Gate::open`]:
/// a test acts while a model call is certainly under way, with no timing.
/// The fake answers nothing else meanwhile (wiremock serves from one
/// thread), which is what a test of one course wants.
#[derive(Clone)]
pub struct Gate {
    lesson: u32,
    state: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    /// The gated request has arrived and waits.
    held: bool,
    open: bool,
}

/// How long a gated request waits at most: a failing test must not leave the
/// fake's thread blocked for good.
const GATE_LIMIT: Duration = Duration::from_secs(120);

impl Gate {
    /// A closed gate on lesson `lesson`.
    pub fn on_lesson(lesson: u32) -> Self {
        Self {
            lesson,
            state: Arc::default(),
        }
    }

    /// Whether the gated request has arrived (and waits for [`Gate::open`]).
    pub fn held(&self) -> bool {
        self.state.0.lock().unwrap().held
    }

    /// Lets the gated request (and every later one) through.
    pub fn open(&self) {
        self.state.0.lock().unwrap().open = true;
        self.state.1.notify_all();
    }

    /// Blocks a request for `number` until the gate opens.
    fn pass(&self, number: u32) {
        if number != self.lesson {
            return;
        }
        let (lock, opened) = &*self.state;
        let mut state = lock.lock().unwrap();
        if state.open {
            return;
        }
        state.held = true;
        let (mut state, _) = opened
            .wait_timeout_while(state, GATE_LIMIT, |s| !s.open)
            .unwrap();
        state.held = false;
        state.open = true;
    }
}

impl Drop for FakeLlm {
    /// Frees a request still held, so the server can shut down.
    fn drop(&mut self) {
        if let Some(gate) = &self.gate {
            gate.open();
        }
    }
}

struct Responder {
    script: Script,
    seen: Arc<Mutex<Seen>>,
}

/// The running fake.
pub struct FakeLlm {
    pub server: MockServer,
    pub seen: Arc<Mutex<Seen>>,
    gate: Option<Gate>,
}

impl FakeLlm {
    /// Starts a fake following `script`.
    pub async fn start(script: Script) -> Self {
        let server = MockServer::start().await;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let gate = script.gate.clone();
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Responder {
                script,
                seen: seen.clone(),
            })
            .mount(&server)
            .await;
        Self { server, seen, gate }
    }

    /// Base URL to configure as OPENAI_BASE_URL.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// How often each thing was asked.
    pub fn counts(&self) -> HashMap<Asked, usize> {
        let mut counts = HashMap::new();
        for (_, asked) in &self.seen.lock().unwrap().asked {
            *counts.entry(asked.clone()).or_default() += 1;
        }
        counts
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().asked.len()
    }

    /// The structured-output mode of each request, in order.
    pub fn modes(&self) -> Vec<&'static str> {
        self.seen.lock().unwrap().modes.clone()
    }

    /// The request bodies, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.seen.lock().unwrap().bodies.clone()
    }

    /// Arrival times of the requests.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.seen
            .lock()
            .unwrap()
            .asked
            .iter()
            .map(|(t, _)| *t)
            .collect()
    }
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).expect("JSON request");
        let asked = read_request(&body);
        let (index, repeat) = {
            let mut seen = self.seen.lock().unwrap();
            let repeat = seen.asked.iter().filter(|(_, a)| *a == asked).count();
            seen.asked.push((Instant::now(), asked.clone()));
            seen.modes.push(mode_of(&body));
            seen.bodies.push(body.clone());
            (seen.asked.len() - 1, repeat)
        };
        if let Some(r) = self.script.first.get(index) {
            return r.clone();
        }
        if let Some(r) = &self.script.always {
            return r.clone();
        }
        if let Some(dialect) = &self.script.dialect {
            let answer = match &asked {
                Asked::Outline { topic } => outline_answer(topic, lesson_count(&body)),
                Asked::Lesson { number, .. } => {
                    cite_if_grounded(lesson_answer(*number, &self.script), &body)
                }
                Asked::Translation { .. } => translation_answer(user_message(&body)),
            };
            return dialect(&Exchange {
                body: &body,
                asked: &asked,
                repeat,
                answer,
            });
        }
        let (content, extra) = match &asked {
            Asked::Outline { topic } => {
                (outline_answer(topic, lesson_count(&body)), Duration::ZERO)
            }
            Asked::Lesson { number, .. } => {
                if let Some(gate) = &self.script.gate {
                    gate.pass(*number);
                }
                if let Some(r) = self.script.failing_lessons.get(number) {
                    return r.clone();
                }
                let extra = self
                    .script
                    .slow_lessons
                    .get(number)
                    .copied()
                    .unwrap_or_default();
                (
                    cite_if_grounded(lesson_answer(*number, &self.script), &body),
                    extra,
                )
            }
            Asked::Translation { lesson, .. } => {
                let extra = self
                    .script
                    .slow_translations
                    .get(lesson)
                    .copied()
                    .unwrap_or_default();
                (translation_answer(user_message(&body)), extra)
            }
        };
        completion(&content).set_delay(self.script.delay + extra)
    }
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

fn read_request(body: &Value) -> Asked {
    let user = user_message(body);
    // Read from the prompt, as the schema is not in every mode's request.
    if user.contains("Translate the subtitles of lesson ") {
        // "Translate the subtitles of lesson N of a course on ... into the
        // language with BCP-47 tag "xx"."
        let lesson = line_after(user, "Translate the subtitles of lesson ")
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("lesson number in the prompt");
        let language = user
            .rsplit("into the language with BCP-47 tag \"")
            .next()
            .and_then(|l| l.split('"').next())
            .unwrap_or("")
            .to_owned();
        Asked::Translation { lesson, language }
    } else if user.contains("Plan a course on: ") {
        let topic = line_after(user, "Plan a course on: ")
            .unwrap_or("")
            .trim()
            .to_owned();
        Asked::Outline { topic }
    } else {
        let topic = line_after(user, "Topic: ").unwrap_or("").trim().to_owned();
        let number = line_after(user, "Write lesson ")
            .and_then(|l| l.trim_end_matches('.').parse().ok())
            .expect("lesson number in the prompt");
        Asked::Lesson { topic, number }
    }
}

fn lesson_count(body: &Value) -> u32 {
    line_after(user_message(body), "Number of lessons: exactly ")
        .and_then(|l| l.trim_end_matches('.').parse().ok())
        .expect("lesson count in the prompt")
}

/// A chat completion as OpenAI sends it.
pub fn completion(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150 }
    }))
}

/// An OpenAI-style error response.
pub fn error(status: u16, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": { "message": format!("fake {code}"), "type": code, "param": null, "code": code }
    }))
}

/// Each numbered cue of the prompt in capitals (the same length, so it fits).
fn translation_answer(user: &str) -> String {
    let cues: Vec<String> = user
        .split("\nCues:\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(". ").map(|(_, t)| t.to_uppercase()))
        .collect();
    json!({ "cues": cues }).to_string()
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
        "tags": ["Fake Tag", topic],
        "difficulty": "beginner",
        "learning_outcomes": ["Use the first idea"]
    })
    .to_string()
}

/// A lesson answer citing `[S1]`, as a model told to cite the source
/// passages of its prompt does, when the prompt lists some.
pub fn cite_if_grounded(answer: String, body: &Value) -> String {
    if !user_message(body).contains("\n[S1] ") {
        return answer;
    }
    let mut v: Value = serde_json::from_str(&answer).unwrap();
    let cited = format!("{} [S1]", v["content_md"].as_str().unwrap());
    v["content_md"] = json!(cited);
    v["sources"] = json!([{ "title": "[S1] the first passage", "url": null }]);
    v.to_string()
}

fn lesson_answer(number: u32, script: &Script) -> String {
    let markdown = script.lesson_markdown.as_deref();
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
        "content_md": markdown.map_or_else(
            || format!("# Lesson {number}\n\n## Idea\n\nSome teaching."),
            str::to_owned,
        ),
        "sections": [{ "heading": "Idea", "body": "Some teaching." }],
        "quiz": [question("One?"), question("Two?"), question("Three?")],
        "sources": [{ "title": "A textbook", "url": null }],
        "elements": script.lesson_elements.clone().unwrap_or_else(|| json!([
            { "id": format!("l{number}-code"), "kind": "code_block", "language": "python",
              "code": "print('hi')", "caption": "Say hi", "expected_output": "hi" },
            { "id": format!("l{number}-exercise"), "kind": "exercise", "prompt": "Do it",
              "hints": ["Try"], "solution": "Done", "difficulty": null },
            { "id": format!("l{number}-tf"), "kind": "true_false", "question": "Water is wet",
              "answer": true, "explanation": "It is." }
        ]))
    })
    .to_string()
}
