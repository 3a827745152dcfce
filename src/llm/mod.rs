//! The language model behind course generation.
//!
//! [`LlmClient`] is what the rest of the service sees: "write the outline of
//! this course", "write lesson n". Two implementations:
//!
//! - [`openai::OpenAiClient`]: any OpenAI-compatible `/chat/completions`
//!   server (OpenAI, Ollama, vLLM, llama.cpp), with JSON-schema structured
//!   output, local validation and bounded re-asks, timeouts and retries.
//! - [`offline::OfflineClient`]: deterministic templated courses, no network
//!   and no key, so the service runs end to end on a bare machine.
//!
//! Both answer with the domain's own events ([`OutlineGenerated`],
//! [`LessonGenerated`]), already checked by [`validate`], so the caller only
//! has to hand them to `decide`.

pub mod check;
pub(crate) mod elements;
pub(crate) mod offline;
pub(crate) mod openai;
pub(crate) mod prompts;
pub(crate) mod schema;
mod settings;
pub(crate) mod translation;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use uuid::Uuid;

use crate::domain::subtitles::Cue;
use crate::domain::{CourseRequested, LessonGenerated, OutlineGenerated, SubtitlesGenerated};

pub use offline::OfflineClient;
pub use openai::{CheckReport, Mode, OpenAiClient, OpenAiConfig, RetryPolicy, StructuredOutput};
pub use settings::{LlmSettings, Provider};

/// The OpenAI API, used when `OPENAI_BASE_URL` is not set.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Model asked for when `LLM_MODEL` is not set and the provider is `openai`.
pub(crate) const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";

/// A chunk of the user's library retrieved for a step, as the model is
/// shown it: `label` (`S1`, `S2`, ...) is the id the model cites inline.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceChunk {
    pub label: String,
    pub chunk_id: Uuid,
    pub source_id: Uuid,
    /// The document version the chunk belongs to.
    pub version: u32,
    pub path: String,
    pub title: String,
    /// The page, for PDF.
    pub page: Option<u32>,
    /// The heading path joined by ` > `, for Markdown and HTML.
    pub heading: Option<String>,
    pub text: String,
    /// `ts_rank_cd` of the chunk for the step's query, in millionths.
    pub score_micros: u64,
}

impl SourceChunk {
    /// A citation of this chunk quoting `passage` (which must be its text).
    pub fn citation(&self, passage: String) -> crate::domain::Citation {
        crate::domain::Citation {
            label: self.label.clone(),
            source_id: self.source_id,
            version: self.version,
            chunk_id: self.chunk_id,
            path: self.path.clone(),
            page: self.page,
            heading: self.heading.clone(),
            passage,
        }
    }
}

/// Writes course outlines and lessons.
///
/// Object-safe, shared as `Arc<dyn LlmClient>` by every course actor.
/// Answers are validated before they are returned: an `Ok` outline plans
/// exactly `num_lessons` lessons numbered 1..=N, and an `Ok` lesson passes
/// [`validate::lesson`], so `decide` accepts them.
#[async_trait]
pub trait LlmClient: Send + Sync {
    /// Model name recorded in `GenerationStarted` and in the generated events.
    fn model(&self) -> &str;

    /// Plans the course: title, description and one [`crate::domain::LessonPlan`] per lesson,
    /// drawing on `sources` (the chunks retrieved for the topic; none: ungrounded).
    ///
    /// # Errors
    /// [`LlmError`]; [`LlmError::retryable`] tells whether trying later may help.
    async fn outline_grounded(
        &self,
        course: &CourseRequested,
        sources: &[SourceChunk],
    ) -> Result<OutlineGenerated, LlmError>;

    /// Writes lesson `number` of the outline from `sources` (the chunks
    /// retrieved for it), citing them inline by label (`[S1]`); an `Ok`
    /// lesson cites no label outside `sources`. No sources: ungrounded.
    ///
    /// # Errors
    /// [`LlmError`]; [`LlmError::retryable`] tells whether trying later may help.
    async fn lesson_grounded(
        &self,
        course: &CourseRequested,
        outline: &OutlineGenerated,
        number: u32,
        sources: &[SourceChunk],
    ) -> Result<LessonGenerated, LlmError>;

    /// [`LlmClient::outline_grounded`] without sources.
    ///
    /// # Errors
    /// As [`LlmClient::outline_grounded`].
    async fn outline(&self, course: &CourseRequested) -> Result<OutlineGenerated, LlmError> {
        self.outline_grounded(course, &[]).await
    }

    /// [`LlmClient::lesson_grounded`] without sources.
    ///
    /// # Errors
    /// As [`LlmClient::lesson_grounded`].
    async fn lesson(
        &self,
        course: &CourseRequested,
        outline: &OutlineGenerated,
        number: u32,
    ) -> Result<LessonGenerated, LlmError> {
        self.lesson_grounded(course, outline, number, &[]).await
    }

    /// Translates lesson `lesson`'s subtitle `cues` into `language`, cue by
    /// cue, keeping their timings.
    ///
    /// # Errors
    /// [`LlmError`]; [`LlmError::retryable`] tells whether trying later may help.
    async fn translate(
        &self,
        course: &CourseRequested,
        lesson: u32,
        cues: &[Cue],
        language: &str,
    ) -> Result<SubtitlesGenerated, LlmError>;
}

/// Why the model could not deliver. Messages say what to do about it, since
/// they end up in `CourseFailed` and in front of users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM server rejected the API key ({status}): check OPENAI_API_KEY; {message}")]
    Unauthorized { status: u16, message: String },
    #[error("the LLM server refused access ({status}): the API key may lack permission for the model or endpoint; {message}")]
    Forbidden { status: u16, message: String },
    #[error("the LLM server found no such model or endpoint (404): check LLM_MODEL and OPENAI_BASE_URL; {message}")]
    NotFound { message: String },
    #[error(
        "the LLM account has run out of quota or credit: top it up or use another key; {message}"
    )]
    InsufficientQuota { message: String },
    #[error("the LLM server rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("the LLM server kept rate-limiting (429) after {attempts} attempts: lower LLM_MAX_CONCURRENCY or retry later; {message}")]
    RateLimited { attempts: u32, message: String },
    #[error(
        "the LLM server kept failing ({status}) after {attempts} attempts: retry later; {message}"
    )]
    Server {
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("the LLM server did not answer within {timeout:?}, {attempts} attempts: retry later or raise LLM_TIMEOUT_SECS")]
    Timeout { attempts: u32, timeout: Duration },
    #[error("could not reach the LLM server after {attempts} attempts: check OPENAI_BASE_URL and the network; {message}")]
    Connection { attempts: u32, message: String },
    #[error(
        "the LLM server's reply is not an OpenAI chat completion: check OPENAI_BASE_URL; {message}"
    )]
    Protocol { message: String },
    #[error(
        "the LLM server does not take structured output mode {mode} ({status}): set \
         LLM_STRUCTURED_OUTPUT=auto (or another mode); {message}"
    )]
    StructuredOutput {
        mode: String,
        status: u16,
        message: String,
    },
    #[error("the model gave no usable answer after {attempts} attempts: {reason}")]
    InvalidAnswer { attempts: u32, reason: String },
}

impl LlmError {
    /// Whether trying the same step again later may succeed: true for
    /// exhausted retries on rate limits, server errors, timeouts and
    /// connection errors; false for errors that need a person (key, quota,
    /// model name, request shape) and for a model that keeps answering wrong.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Connection { .. }
        )
    }
}

/// `url::ParseError`, named through reqwest (which re-exports only `Url`).
type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Settings with which no client can work; found at startup, before any
/// course is generated.
#[derive(Debug, thiserror::Error)]
pub enum LlmSettingsError {
    #[error("LLM_MAX_CONCURRENCY must be at least 1")]
    ZeroConcurrency,
    #[error("LLM_TIMEOUT_SECS must be at least 1")]
    ZeroTimeout,
    #[error("LLM_MAX_TOKENS must be at least 256 (a lesson needs thousands)")]
    TooFewMaxTokens,
    #[error(
        "LLM_PROVIDER=openai with the OpenAI API needs OPENAI_API_KEY \
         (or set OPENAI_BASE_URL to a local server, or LLM_PROVIDER=offline)"
    )]
    MissingApiKey,
    #[error("OPENAI_BASE_URL {url:?} is not a URL")]
    BaseUrl {
        url: String,
        #[source]
        source: UrlParseError,
    },
    #[error("building the HTTP client of the LLM")]
    HttpClient(#[source] reqwest::Error),
}

/// Builds the client the settings ask for, capped at
/// `LLM_MAX_CONCURRENCY` calls in flight.
///
/// # Errors
/// Settings that cannot work, such as the OpenAI API without a key.
pub(crate) fn client_from_settings(
    s: &LlmSettings,
) -> Result<Arc<dyn LlmClient>, LlmSettingsError> {
    if s.llm_max_concurrency == 0 {
        return Err(LlmSettingsError::ZeroConcurrency);
    }
    let inner: Arc<dyn LlmClient> = match s.provider() {
        Provider::Offline => Arc::new(OfflineClient::new(Duration::from_millis(
            s.offline_latency_ms,
        ))),
        Provider::Openai => Arc::new(OpenAiClient::new(s.openai_config()?)?),
    };
    Ok(Arc::new(Limited {
        inner,
        permits: Semaphore::new(s.llm_max_concurrency),
    }))
}

/// Caps the calls in flight of a client. A call holds its permit through
/// its retries and back-offs, so a rate-limited server sees less load.
struct Limited {
    inner: Arc<dyn LlmClient>,
    permits: Semaphore,
}

#[async_trait]
impl LlmClient for Limited {
    fn model(&self) -> &str {
        self.inner.model()
    }

    async fn outline_grounded(
        &self,
        course: &CourseRequested,
        sources: &[SourceChunk],
    ) -> Result<OutlineGenerated, LlmError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let result = self.inner.outline_grounded(course, sources).await;
        record_call("outline", result.as_ref().map(|o| o.usage));
        result
    }

    async fn lesson_grounded(
        &self,
        course: &CourseRequested,
        outline: &OutlineGenerated,
        number: u32,
        sources: &[SourceChunk],
    ) -> Result<LessonGenerated, LlmError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let result = self
            .inner
            .lesson_grounded(course, outline, number, sources)
            .await;
        record_call("lesson", result.as_ref().map(|l| l.usage));
        result
    }

    async fn translate(
        &self,
        course: &CourseRequested,
        lesson: u32,
        cues: &[Cue],
        language: &str,
    ) -> Result<SubtitlesGenerated, LlmError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let result = self.inner.translate(course, lesson, cues, language).await;
        record_call("translation", result.as_ref().map(|t| t.usage));
        result
    }
}

/// Counts a finished call (with its retries) and its tokens for `/metrics`.
fn record_call(kind: &'static str, result: Result<crate::domain::TokenUsage, &LlmError>) {
    metrics::counter!("coursegen_llm_calls_total", "kind" => kind).increment(1);
    match result {
        Ok(usage) => {
            metrics::counter!("coursegen_llm_tokens_total", "kind" => "prompt")
                .increment(usage.prompt_tokens);
            metrics::counter!("coursegen_llm_tokens_total", "kind" => "completion")
                .increment(usage.completion_tokens);
        }
        Err(_) => metrics::counter!("coursegen_llm_errors_total", "kind" => kind).increment(1),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        llm: LlmSettings,
    }

    /// The defaults the README documents, built by hand so that the
    /// environment of the test run (an exported OPENAI_API_KEY, say) cannot
    /// change them.
    fn settings() -> LlmSettings {
        LlmSettings {
            llm_provider: None,
            openai_base_url: DEFAULT_BASE_URL.into(),
            openai_api_key: None,
            llm_model: None,
            llm_max_concurrency: 16,
            llm_timeout_secs: 120,
            llm_max_retries: 5,
            llm_structured_output: StructuredOutput::Auto,
            llm_max_tokens: 16384,
            offline_latency_ms: 0,
        }
    }

    #[test]
    fn settings_are_a_valid_clap_definition() {
        Cli::command().debug_assert();
    }

    #[test]
    fn provider_defaults_to_openai_only_with_a_key() {
        assert_eq!(settings().provider(), Provider::Offline);
        assert_eq!(settings().model(), "offline");
        let with_key = LlmSettings {
            openai_api_key: Some("sk-test".into()),
            ..settings()
        };
        assert_eq!(with_key.provider(), Provider::Openai);
        assert_eq!(with_key.model(), DEFAULT_OPENAI_MODEL);
        let explicit = LlmSettings {
            llm_provider: Some(Provider::Offline),
            ..with_key.clone()
        };
        assert_eq!(explicit.provider(), Provider::Offline);
        assert_eq!(explicit.model(), "offline");
        assert!(!format!("{with_key:?}").contains("sk-test"));
    }

    #[test]
    fn openai_without_key_needs_a_local_server() {
        let openai = LlmSettings {
            llm_provider: Some(Provider::Openai),
            ..settings()
        };
        assert!(client_from_settings(&openai).is_err());
        let local = LlmSettings {
            openai_base_url: "http://127.0.0.1:11434/v1".into(),
            llm_model: Some("llama3.1".into()),
            ..openai
        };
        assert_eq!(client_from_settings(&local).unwrap().model(), "llama3.1");
        assert_eq!(
            client_from_settings(&settings()).unwrap().model(),
            "offline"
        );
    }

    #[tokio::test]
    async fn concurrency_is_capped() {
        let s = LlmSettings {
            llm_max_concurrency: 1,
            offline_latency_ms: 100,
            ..settings()
        };
        let client = client_from_settings(&s).unwrap();
        let course = CourseRequested {
            request_id: uuid::Uuid::nil(),
            user_id: uuid::Uuid::nil(),
            topic: "Tides".into(),
            grade_level: None,
            num_lessons: 1,
            language: "en".into(),
            source_filter: None,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(client.outline(&course), client.outline(&course));
        assert_eq!(a.unwrap(), b.unwrap());
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn a_base_url_that_does_not_parse_keeps_the_parser_error() {
        let s = LlmSettings {
            llm_provider: Some(Provider::Openai),
            openai_base_url: "not a url".into(),
            openai_api_key: Some("sk-test".into()),
            ..settings()
        };
        let Err(err) = client_from_settings(&s) else {
            panic!("a client on a base URL that is not a URL");
        };
        assert!(matches!(err, LlmSettingsError::BaseUrl { .. }), "{err:?}");
        let source = std::error::Error::source(&err).expect("the parser's error is kept");
        assert!(source.downcast_ref::<UrlParseError>().is_some());
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let timeout = LlmError::Timeout {
            attempts: 6,
            timeout: Duration::from_secs(120),
        };
        let key = LlmError::Unauthorized {
            status: 401,
            message: "bad key".into(),
        };
        assert!(timeout.retryable());
        assert!(!key.retryable());
        assert!(key.to_string().contains("rejected the API key (401)"));
    }
}
