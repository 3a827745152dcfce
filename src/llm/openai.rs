//! A client of any OpenAI-compatible chat completions API: OpenAI itself,
//! Ollama, vLLM, the llama.cpp server, ...
//!
//! One step (an outline, a lesson) is up to three questions to the model:
//! the first, and at most [`MAX_REASKS`] re-asks when the answer is not valid
//! (bad JSON, cut off, wrong lesson count, quiz answer out of range, ...),
//! each carrying the model's previous answer and what was wrong with it.
//! Each question is one HTTP request, repeated on transient failures (429,
//! 5xx, timeouts, connection errors) with jittered exponential back-off that
//! gives way to the server's `Retry-After`. Permanent failures (400, 401,
//! 403, 404, exhausted quota) are never repeated.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::prompts::{self, LessonAnswer, OutlineAnswer, Prompt};
use super::validate::{self, InvalidAnswer};
use super::{LlmClient, LlmError, LlmSettingsError};
use crate::domain::{CourseRequested, LessonGenerated, OutlineGenerated, TokenUsage};
use crate::retry::Backoff;

/// Times the model is asked again after an answer that fails validation.
pub(crate) const MAX_REASKS: u32 = 2;

/// Longest `Retry-After` honoured; a server asking for more gets the normal
/// back-off instead of stalling a course for an hour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How transient HTTP failures are repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Repeats of one request after its first failure.
    pub max_retries: u32,
    /// Wait before the first repeat; doubles with each further one.
    pub base_delay: Duration,
    /// Ceiling of the doubling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The waits between repeats: exponential, capped, with jitter (50 to
    /// 100 % of each delay) so that many courses rate-limited together do
    /// not come back together.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(self.base_delay, self.max_delay).with_jitter(0.5..=1.0)
    }
}

/// The wait before a repeat: the server's `Retry-After` when it gave one
/// no longer than [`MAX_RETRY_AFTER`], else the `computed` back-off.
fn retry_delay(retry_after: Option<Duration>, computed: Duration) -> Duration {
    retry_after
        .filter(|d| *d <= MAX_RETRY_AFTER)
        .unwrap_or(computed)
}

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
}

/// [`LlmClient`] over an OpenAI-compatible `/chat/completions` endpoint.
pub struct OpenAiClient {
    http: reqwest::Client,
    url: Url,
    api_key: Option<String>,
    model: String,
    timeout: Duration,
    retry: RetryPolicy,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
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
            http,
            url,
            api_key: config.api_key.filter(|k| !k.trim().is_empty()),
            model: config.model,
            timeout: config.timeout,
            retry: config.retry,
        })
    }

    /// Asks until an answer passes `accept`, re-asking at most [`MAX_REASKS`]
    /// times. Returns the accepted answer and the tokens of all questions.
    async fn ask<T, E>(
        &self,
        prompt: Prompt,
        schema_name: &str,
        schema: Value,
        accept: impl Fn(T) -> Result<E, InvalidAnswer>,
    ) -> Result<(E, TokenUsage), LlmError>
    where
        T: DeserializeOwned,
    {
        let response_format = prompts::response_format(schema_name, schema);
        let mut messages = vec![
            json!({ "role": "system", "content": prompt.system }),
            json!({ "role": "user", "content": prompt.user }),
        ];
        let mut usage = TokenUsage::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = json!({
                "model": self.model,
                "messages": messages,
                "response_format": response_format,
            });
            let reply = self.complete(&body).await?;
            usage = usage + reply.usage;
            let verdict = check_reply(&reply).and_then(|content| {
                let answer: T = serde_json::from_str(strip_code_fence(content)).map_err(|e| {
                    InvalidAnswer(format!(
                        "the answer is not JSON of the required shape ({e})"
                    ))
                })?;
                accept(answer)
            });
            let reason = match verdict {
                Ok(event) => return Ok((event, usage)),
                Err(reason) => reason,
            };
            if attempt > MAX_REASKS {
                return Err(LlmError::InvalidAnswer {
                    attempts: attempt,
                    reason: reason.0,
                });
            }
            debug!(schema = schema_name, attempt, %reason, "re-asking the model");
            messages.push(json!({
                "role": "assistant",
                "content": reply.content.unwrap_or_default(),
            }));
            messages.push(json!({
                "role": "user",
                "content": format!(
                    "Your answer was rejected: {reason}. Answer again with the complete \
                     JSON object, following the schema and fixing this."
                ),
            }));
        }
    }

    /// One question, repeated on transient failures.
    async fn complete(&self, body: &Value) -> Result<Reply, LlmError> {
        let mut retries = 0;
        let mut backoff = self.retry.backoff();
        loop {
            let (transient, retry_after) = match self.send(body).await {
                Ok(reply) => return Ok(reply),
                Err(Failure::Permanent(error)) => return Err(error),
                Err(Failure::Transient(t, retry_after)) => (t, retry_after),
            };
            if retries >= self.retry.max_retries {
                return Err(transient.to_error(retries + 1, self.timeout));
            }
            // Drawn even when the server says when to come back, so the
            // delays after it keep growing with the number of repeats.
            let delay = retry_delay(retry_after, backoff.next_delay());
            warn!(
                error = %transient.to_error(retries + 1, self.timeout),
                delay_ms = delay.as_millis() as u64,
                "LLM request failed, retrying"
            );
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }

    /// One HTTP request.
    async fn send(&self, body: &Value) -> Result<Reply, Failure> {
        let mut request = self
            .http
            .post(self.url.clone())
            .timeout(self.timeout)
            .json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(Failure::from_reqwest)?;
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let text = response.text().await.map_err(Failure::from_reqwest)?;
        if status.is_success() {
            return parse_completion(&text).map_err(Failure::Permanent);
        }
        Err(classify_status(status, &text, retry_after))
    }
}

#[async_trait]
impl LlmClient for OpenAiClient {
    fn model(&self) -> &str {
        &self.model
    }

    async fn outline(&self, course: &CourseRequested) -> Result<OutlineGenerated, LlmError> {
        let (outline, usage) = self
            .ask(
                prompts::outline(course),
                prompts::OUTLINE_SCHEMA_NAME,
                prompts::outline_schema(),
                |answer: OutlineAnswer| {
                    let outline = answer.into_event(&self.model, TokenUsage::default());
                    validate::outline(course, &outline)?;
                    Ok(outline)
                },
            )
            .await?;
        Ok(OutlineGenerated { usage, ..outline })
    }

    async fn lesson(
        &self,
        course: &CourseRequested,
        outline: &OutlineGenerated,
        number: u32,
    ) -> Result<LessonGenerated, LlmError> {
        let (lesson, usage) = self
            .ask(
                prompts::lesson(course, outline, number),
                prompts::LESSON_SCHEMA_NAME,
                prompts::lesson_schema(),
                |answer: LessonAnswer| {
                    let difficulty = prompts::course_difficulty(course, outline);
                    let lesson = answer.into_event(&self.model, TokenUsage::default(), difficulty);
                    validate::lesson(outline, number, &lesson)?;
                    Ok(lesson)
                },
            )
            .await?;
        Ok(LessonGenerated { usage, ..lesson })
    }

    async fn translate(
        &self,
        course: &CourseRequested,
        lesson: u32,
        cues: &[crate::domain::subtitles::Cue],
        language: &str,
    ) -> Result<crate::domain::SubtitlesGenerated, LlmError> {
        use super::translation;
        let (track, usage) = self
            .ask(
                translation::prompt(course, lesson, cues, language),
                translation::SCHEMA_NAME,
                translation::schema(),
                |answer| translation::accept(answer, cues, lesson, language, &self.model),
            )
            .await?;
        Ok(crate::domain::SubtitlesGenerated { usage, ..track })
    }
}

/// The parts of a completion that matter here.
#[derive(Debug)]
struct Reply {
    content: Option<String>,
    refusal: Option<String>,
    finish_reason: Option<String>,
    usage: TokenUsage,
}

/// The answer's text, unless the reply itself says it is unusable.
fn check_reply(reply: &Reply) -> Result<&str, InvalidAnswer> {
    if reply.finish_reason.as_deref() == Some("length") {
        return Err(InvalidAnswer(
            "the answer was cut off at the length limit; give a complete but more \
             concise JSON answer"
                .into(),
        ));
    }
    if let Some(refusal) = &reply.refusal {
        return Err(InvalidAnswer(format!("the model refused: {refusal}")));
    }
    match reply.content.as_deref() {
        Some(content) if !content.trim().is_empty() => Ok(content),
        _ => Err(InvalidAnswer("the answer is empty".into())),
    }
}

/// Some servers fence JSON in Markdown even when asked for JSON only.
fn strip_code_fence(content: &str) -> &str {
    let trimmed = content.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

fn parse_completion(text: &str) -> Result<Reply, LlmError> {
    let completion: ChatCompletion =
        serde_json::from_str(text).map_err(|e| LlmError::Protocol {
            message: format!("{e}: {}", excerpt(text)),
        })?;
    let usage = completion
        .usage
        .map(|u| TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u
                .total_tokens
                .unwrap_or(u.prompt_tokens + u.completion_tokens),
        })
        .unwrap_or_default();
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Protocol {
            message: "the completion has no choices".into(),
        })?;
    Ok(Reply {
        content: choice.message.content,
        refusal: choice.message.refusal,
        finish_reason: choice.finish_reason,
        usage,
    })
}

/// A failure that may pass if the request is repeated.
#[derive(Debug)]
enum Transient {
    RateLimited(String),
    Server(u16, String),
    Timeout,
    Connection(String),
}

impl Transient {
    fn to_error(&self, attempts: u32, timeout: Duration) -> LlmError {
        match self {
            Self::RateLimited(message) => LlmError::RateLimited {
                attempts,
                message: message.clone(),
            },
            Self::Server(status, message) => LlmError::Server {
                status: *status,
                attempts,
                message: message.clone(),
            },
            Self::Timeout => LlmError::Timeout { attempts, timeout },
            Self::Connection(message) => LlmError::Connection {
                attempts,
                message: message.clone(),
            },
        }
    }
}

/// How one request failed.
#[derive(Debug)]
enum Failure {
    Permanent(LlmError),
    /// With the wait the server asked for, if it did.
    Transient(Transient, Option<Duration>),
}

impl Failure {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return Self::Transient(Transient::Timeout, None);
        }
        if e.is_builder() {
            return Self::Permanent(LlmError::Protocol {
                message: error_chain(&e),
            });
        }
        // Connect errors, resets, truncated bodies: the network's fault.
        Self::Transient(Transient::Connection(error_chain(&e)), None)
    }
}

/// Sorts an error status into permanent and transient.
fn classify_status(status: StatusCode, body: &str, retry_after: Option<Duration>) -> Failure {
    let details = ErrorDetails::parse(body);
    let message = details.message;
    if details.codes.iter().any(|c| c == "insufficient_quota") {
        return Failure::Permanent(LlmError::InsufficientQuota { message });
    }
    let code = status.as_u16();
    let transient = |t| Failure::Transient(t, retry_after);
    match status {
        StatusCode::UNAUTHORIZED => Failure::Permanent(LlmError::Unauthorized {
            status: code,
            message,
        }),
        StatusCode::FORBIDDEN => Failure::Permanent(LlmError::Forbidden {
            status: code,
            message,
        }),
        StatusCode::NOT_FOUND => Failure::Permanent(LlmError::NotFound { message }),
        StatusCode::TOO_MANY_REQUESTS => transient(Transient::RateLimited(message)),
        StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT => {
            transient(Transient::Server(code, message))
        }
        s if s.is_server_error() => transient(Transient::Server(code, message)),
        _ => Failure::Permanent(LlmError::Rejected {
            status: code,
            message,
        }),
    }
}

/// The readable part of an error body, in the shapes servers use:
/// OpenAI `{"error": {"message", "type", "code"}}`, vLLM
/// `{"message", "type", "code"}`, Ollama `{"error": "..."}`.
struct ErrorDetails {
    message: String,
    codes: Vec<String>,
}

impl ErrorDetails {
    fn parse(body: &str) -> Self {
        let Ok(value) = serde_json::from_str::<Value>(body) else {
            return Self {
                message: excerpt(body),
                codes: vec![],
            };
        };
        let inner = match value.get("error") {
            Some(Value::String(message)) => {
                return Self {
                    message: message.clone(),
                    codes: vec![],
                }
            }
            Some(obj @ Value::Object(_)) => obj,
            _ => &value,
        };
        let message = inner
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| excerpt(body));
        let codes = ["code", "type"]
            .iter()
            .filter_map(|k| inner.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        Self { message, codes }
    }
}

/// How long the server asked to wait: `retry-after-ms` (OpenAI), else
/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let non_negative = |x: f64| (x.is_finite() && x >= 0.0).then_some(x);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if let Some(ms) = non_negative(ms) {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = header(RETRY_AFTER.as_str())?;
    if let Ok(secs) = value.parse::<f64>() {
        return non_negative(secs).map(Duration::from_secs_f64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// At most 300 characters of a body, for error messages.
fn excerpt(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_milliseconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = headers(&[("retry-after", "7")]);
        assert_eq!(retry_after(&secs, now), Some(Duration::from_secs(7)));
        let date = headers(&[(
            "retry-after",
            &httpdate::fmt_http_date(now + Duration::from_secs(20)),
        )]);
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(20)));
        let past = headers(&[(
            "retry-after",
            &httpdate::fmt_http_date(now - Duration::from_secs(20)),
        )]);
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        let ms = headers(&[("retry-after-ms", "250"), ("retry-after", "9")]);
        assert_eq!(retry_after(&ms, now), Some(Duration::from_millis(250)));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn a_retry_after_within_a_minute_takes_the_place_of_the_back_off() {
        let computed = Duration::from_millis(700);
        let secs = Duration::from_secs;
        assert_eq!(retry_delay(Some(secs(7)), computed), secs(7));
        assert_eq!(retry_delay(Some(Duration::ZERO), computed), Duration::ZERO);
        assert_eq!(
            retry_delay(Some(MAX_RETRY_AFTER), computed),
            MAX_RETRY_AFTER
        );
        assert_eq!(retry_delay(Some(secs(3600)), computed), computed);
        assert_eq!(retry_delay(None, computed), computed);
    }

    #[test]
    fn the_policy_backs_off_from_its_base_delay_to_its_cap_never_above() {
        // The jitter itself is retry::Backoff's (tested there); this is
        // the client's use of it: 50 to 100 % of the policy's delays.
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let mut backoff = policy.backoff();
        let first = backoff.next_delay();
        assert!(
            first >= policy.base_delay / 2 && first <= policy.base_delay,
            "{first:?}"
        );
        for _ in 0..10 {
            backoff.next_delay();
        }
        let capped = backoff.next_delay();
        assert!(
            capped >= policy.max_delay / 2 && capped <= policy.max_delay,
            "{capped:?}"
        );
    }

    #[test]
    fn quota_errors_are_permanent_even_on_429() {
        let body = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert!(matches!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, body, None),
            Failure::Permanent(LlmError::InsufficientQuota { .. })
        ));
        assert!(matches!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, "{}", None),
            Failure::Transient(Transient::RateLimited(_), None)
        ));
        assert!(matches!(
            classify_status(StatusCode::BAD_REQUEST, r#"{"error":"bad schema"}"#, None),
            Failure::Permanent(LlmError::Rejected { status: 400, ref message }) if message == "bad schema"
        ));
    }

    #[test]
    fn code_fences_around_json_are_ignored() {
        assert_eq!(strip_code_fence("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_code_fence(" {\"a\":1} "), "{\"a\":1}");
    }
}
