//! A client of any OpenAI-compatible chat completions API: OpenAI itself,
//! Ollama, vLLM, LM Studio, LocalAI, llama.cpp's server, llama-cpp-python's.
//!
//! One step (an outline, a lesson) is a conversation of a few questions:
//!
//! - The structured-output [`Mode`] is the configured one, or in `auto` the
//!   one that worked with this server and model before, else the strictest.
//!   A server that refuses the `response_format` is asked again at once in
//!   the next mode ([`dialect`]); that is not a transient failure.
//! - An answer cut off at the token budget (`finish_reason: "length"`) is
//!   asked again with twice the budget, up to `LLM_MAX_TOKENS`.
//! - Every answer is read leniently ([`parse`]: fences, prose, `<think>`
//!   notes, `reasoning_content`) and validated locally; an invalid one is
//!   re-asked at most [`MAX_REASKS`] times with what was wrong with it, since
//!   some servers take a schema without enforcing it.
//! - Each question is one HTTP request, repeated on transient failures
//!   ([`http`]); permanent failures (400, 401, 403, 404, quota) never are.

mod dialect;
mod http;
mod parse;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tracing::{debug, info};

pub use dialect::{Mode, StructuredOutput};
pub use http::RetryPolicy;

use self::http::{CallError, Transport};
use self::parse::strip_think;
use super::prompts::{self, LessonAnswer, OutlineAnswer, Prompt};
use super::schema::{self, Schema};
use super::translation;
use super::validate::{self, InvalidAnswer};
use super::{LlmClient, LlmError, LlmSettingsError, SourceChunk};
use crate::domain::subtitles::Cue;
use crate::domain::{
    CourseRequested, LessonGenerated, OutlineGenerated, SubtitlesGenerated, TokenUsage,
};

/// Times the model is asked again after an answer that fails validation.
pub(crate) const MAX_REASKS: u32 = 2;

/// First token budget of an outline (a title, a description, a short plan).
const OUTLINE_BUDGET: u32 = 2048;
/// First token budget of a lesson (the markdown, its sections again, a quiz).
const LESSON_BUDGET: u32 = 8192;
/// First token budget of a subtitle translation (a lesson's cue texts).
const TRANSLATION_BUDGET: u32 = 4096;

/// Where and how to reach the server.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL ending before `/chat/completions`, e.g. `https://api.openai.com/v1`
    /// or `http://127.0.0.1:11434/v1` for Ollama.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; local servers usually need none.
    pub api_key: Option<String>,
    pub model: String,
    /// Time limit of one HTTP request (each retry gets a fresh one).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// How to ask for JSON: one mode, or `auto` to find what the server takes.
    pub structured_output: StructuredOutput,
    /// Largest `max_tokens` ever asked for; a first question asks for less.
    pub max_tokens: u32,
}

/// [`LlmClient`] over an OpenAI-compatible `/chat/completions` endpoint.
pub struct OpenAiClient {
    transport: Transport,
    /// The base URL as configured (normalised), the key of learned modes.
    base_url: String,
    model: String,
    structured_output: StructuredOutput,
    max_tokens: u32,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("url", &self.transport.url.as_str())
            .field("model", &self.model)
            .field(
                "api_key",
                &self.transport.api_key.as_ref().map(|_| "<hidden>"),
            )
            .field("structured_output", &self.structured_output)
            .finish_non_exhaustive()
    }
}

/// An accepted answer and what it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered<E> {
    pub value: E,
    /// Tokens of every question of the conversation.
    pub usage: TokenUsage,
    /// The mode the accepted answer was asked in.
    pub mode: Mode,
    /// The model that answered, as the server names it (if it does).
    pub served_model: Option<String>,
}

/// What `coursegen llm check` found: the server answered a structured question.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub mode: Mode,
    pub model: String,
    pub latency: Duration,
    pub usage: TokenUsage,
}

impl OpenAiClient {
    /// A client of the server at `config.base_url`.
    ///
    /// # Errors
    /// [`LlmSettingsError::BaseUrl`] for a base URL that does not parse,
    /// [`LlmSettingsError::HttpClient`] for an HTTP client that cannot be built.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmSettingsError> {
        let base = config.base_url.trim().trim_end_matches('/');
        let url = Url::parse(&format!("{base}/chat/completions")).map_err(|source| {
            LlmSettingsError::BaseUrl {
                url: config.base_url.clone(),
                source,
            }
        })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("coursegen/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(LlmSettingsError::HttpClient)?;
        Ok(Self {
            transport: Transport {
                http,
                url,
                api_key: config.api_key.filter(|k| !k.trim().is_empty()),
                timeout: config.timeout,
                retry: config.retry,
            },
            base_url: base.to_owned(),
            model: config.model,
            structured_output: config.structured_output,
            max_tokens: config.max_tokens.max(1),
        })
    }

    /// The mode a conversation starts in.
    fn first_mode(&self) -> Mode {
        self.structured_output
            .fixed()
            .or_else(|| dialect::remembered(&self.base_url, &self.model))
            .unwrap_or(Mode::JsonSchema)
    }

    /// The request body of one question.
    fn body(
        &self,
        prompt: &Prompt,
        schema: &Schema,
        mode: Mode,
        budget: u32,
        reasks: &[Value],
    ) -> Value {
        let mut system = prompt.system.clone();
        if mode.schema_in_prompt() {
            system.push_str(&format!(
                "\nAnswer with one JSON object (no prose, no code fence) valid against \
                 this JSON schema:\n{}",
                schema.bounded
            ));
        }
        let mut messages = vec![
            json!({ "role": "system", "content": system }),
            json!({ "role": "user", "content": prompt.user }),
        ];
        messages.extend(reasks.iter().cloned());
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_tokens": budget,
        });
        if let Some(format) = mode.response_format(schema) {
            body["response_format"] = format;
        }
        body
    }

    /// Asks until an answer passes `accept`: steps down the modes in
    /// `auto`, grows the token budget after cut-off answers, and re-asks at
    /// most [`MAX_REASKS`] times after invalid ones.
    ///
    /// # Errors
    /// The transport's [`LlmError`]s; [`LlmError::StructuredOutput`] when
    /// the server takes no mode left to try; [`LlmError::InvalidAnswer`]
    /// after the last re-ask.
    async fn ask<T, E>(
        &self,
        prompt: Prompt,
        schema: Schema,
        budget: u32,
        accept: impl Fn(T) -> Result<E, InvalidAnswer>,
    ) -> Result<Answered<E>, LlmError>
    where
        T: DeserializeOwned,
    {
        let mut mode = self.first_mode();
        let mut tried: Vec<Mode> = Vec::new();
        let mut budget = budget.min(self.max_tokens);
        let mut reasks: Vec<Value> = Vec::new();
        let mut usage = TokenUsage::default();
        let mut answers = 0;
        loop {
            let body = self.body(&prompt, &schema, mode, budget, &reasks);
            let reply = match self.transport.complete(&body).await {
                Ok(reply) => reply,
                Err(CallError::Format { status, message }) => {
                    tried.push(mode);
                    // From the top, so that a remembered mode the server
                    // no longer takes does not skip stricter ones it does.
                    let next = Mode::ALL.into_iter().find(|m| !tried.contains(m));
                    match (self.structured_output.fixed(), next) {
                        (None, Some(next)) => {
                            info!(
                                schema = schema.name, refused = mode.as_str(), next = next.as_str(),
                                status, %message, "the LLM server refused the response_format, trying the next mode"
                            );
                            mode = next;
                            continue;
                        }
                        _ => {
                            return Err(LlmError::StructuredOutput {
                                mode: mode.as_str().to_owned(),
                                status,
                                message,
                            })
                        }
                    }
                }
                Err(CallError::Llm(e)) => return Err(e),
            };
            answers += 1;
            if self.structured_output.fixed().is_none() {
                dialect::remember(&self.base_url, &self.model, mode);
            }
            usage = usage + reply.usage_or_estimate(&body);
            if reply.truncated() && budget < self.max_tokens && !reply.stopped_short_of(budget) {
                let larger = budget.saturating_mul(2).min(self.max_tokens);
                debug!(
                    schema = schema.name,
                    budget, larger, "answer cut off, asking again with a larger token budget"
                );
                budget = larger;
                continue;
            }
            let verdict = reply.answer_json().and_then(|value| {
                let answer: T = serde_json::from_value(value).map_err(|e| {
                    InvalidAnswer(format!(
                        "the answer is not JSON of the required shape ({e})"
                    ))
                })?;
                accept(answer)
            });
            let reason = match verdict {
                Ok(value) => {
                    return Ok(Answered {
                        value,
                        usage,
                        mode,
                        served_model: reply.model,
                    })
                }
                Err(reason) => reason,
            };
            if reasks.len() as u32 / 2 >= MAX_REASKS {
                return Err(LlmError::InvalidAnswer {
                    attempts: answers,
                    reason: reason.0,
                });
            }
            let answer = reply.answer_text();
            debug!(
                schema = schema.name, answers, %reason, answer = %parse::excerpt(&answer),
                "re-asking the model"
            );
            reasks.push(json!({ "role": "assistant", "content": answer }));
            reasks.push(json!({
                "role": "user",
                "content": format!(
                    "Your answer was rejected: {reason}. Answer again with the complete \
                     JSON object, following the schema and fixing this."
                ),
            }));
        }
    }

    /// Sends one tiny structured question (as `coursegen llm check` does)
    /// and reports the mode that worked, the model, the latency and usage.
    ///
    /// # Errors
    /// Why the server cannot be used, as in the steps.
    pub async fn check(&self) -> Result<CheckReport, LlmError> {
        let started = Instant::now();
        let answered = self
            .ask(
                prompts::check(),
                schema::check_schema(),
                64,
                |answer: prompts::CheckAnswer| {
                    if answer.answer.trim().is_empty() {
                        return Err(InvalidAnswer("answer is empty: write \"ok\"".into()));
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(CheckReport {
            mode: answered.mode,
            model: answered.served_model.unwrap_or_else(|| self.model.clone()),
            latency: started.elapsed(),
            usage: answered.usage,
        })
    }
}

#[async_trait]
impl LlmClient for OpenAiClient {
    fn model(&self) -> &str {
        &self.model
    }

    async fn outline_grounded(
        &self,
        course: &CourseRequested,
        sources: &[SourceChunk],
    ) -> Result<OutlineGenerated, LlmError> {
        let answered = self
            .ask(
                prompts::outline(course, sources),
                schema::outline_schema(course.num_lessons),
                OUTLINE_BUDGET,
                |answer: OutlineAnswer| {
                    let outline = answer.into_event(&self.model, TokenUsage::default());
                    validate::outline(course, &outline)?;
                    Ok(outline)
                },
            )
            .await?;
        Ok(OutlineGenerated {
            usage: answered.usage,
            ..answered.value
        })
    }

    async fn lesson_grounded(
        &self,
        course: &CourseRequested,
        outline: &OutlineGenerated,
        number: u32,
        sources: &[SourceChunk],
    ) -> Result<LessonGenerated, LlmError> {
        let answered = self
            .ask(
                prompts::lesson(course, outline, number, sources),
                schema::lesson_schema(number),
                LESSON_BUDGET,
                |answer: LessonAnswer| {
                    let difficulty = prompts::course_difficulty(course, outline);
                    let quotes = answer.quotes();
                    let mut lesson = without_notes(answer.into_event(
                        &self.model,
                        TokenUsage::default(),
                        difficulty,
                    ));
                    validate::lesson(outline, number, &lesson)?;
                    validate::citations(&lesson, sources)?;
                    quote_passages(&mut lesson, &validate::quotes(&quotes, sources)?, sources);
                    Ok(lesson)
                },
            )
            .await?;
        Ok(LessonGenerated {
            usage: answered.usage,
            ..answered.value
        })
    }

    async fn translate(
        &self,
        course: &CourseRequested,
        lesson: u32,
        cues: &[Cue],
        language: &str,
    ) -> Result<SubtitlesGenerated, LlmError> {
        let answered = self
            .ask(
                translation::prompt(course, lesson, cues, language),
                schema::translation_schema(cues.len()),
                TRANSLATION_BUDGET,
                |answer| translation::accept(answer, cues, lesson, language, &self.model),
            )
            .await?;
        Ok(SubtitlesGenerated {
            usage: answered.usage,
            ..answered.value
        })
    }
}

/// Records on the lesson's listed sources the passages their quotes were
/// found in (the chunk's own text over the quoted words), for
/// [`crate::sources::grounding::ground_lesson`] to cite.
fn quote_passages(
    lesson: &mut LessonGenerated,
    quoted: &[(String, String)],
    sources: &[SourceChunk],
) {
    for (label, passage) in quoted {
        let Some(chunk) = sources.iter().find(|c| &c.label == label) else {
            continue;
        };
        let listed = lesson
            .sources
            .iter_mut()
            .find(|s| s.cited.is_none() && validate::cited_labels(&s.title).first() == Some(label));
        if let Some(listed) = listed {
            listed.cited = Some(chunk.citation(passage.clone()));
        }
    }
}

/// A lesson without reasoning notes a model may have written into its
/// texts: they must never be published.
fn without_notes(mut lesson: LessonGenerated) -> LessonGenerated {
    lesson.content_md = strip_think(&lesson.content_md);
    for section in &mut lesson.sections {
        section.body = strip_think(&section.body);
    }
    lesson
}
