//! How to reach the language model: the `LLM_*` and `OPENAI_*` settings
//! (flags and environment variables) and the defaults that depend on each
//! other (the provider on the key, the model on the provider).

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::openai::{OpenAiConfig, RetryPolicy, StructuredOutput};
use super::{offline, LlmSettingsError, DEFAULT_BASE_URL, DEFAULT_OPENAI_MODEL};

/// Which generator writes the courses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Provider {
    /// An OpenAI-compatible chat completions server.
    Openai,
    /// The built-in deterministic generator (no network, no key).
    Offline,
}

/// How to reach the language model.
#[derive(Clone, Args)]
pub struct LlmSettings {
    /// Generator of course content. Default: openai when OPENAI_API_KEY is
    /// set, else offline.
    #[arg(long, env = "LLM_PROVIDER", value_enum, global = true)]
    pub llm_provider: Option<Provider>,

    /// Base URL of an OpenAI-compatible API (OpenAI, Ollama, vLLM, llama.cpp server).
    #[arg(long, env = "OPENAI_BASE_URL", default_value = DEFAULT_BASE_URL, global = true)]
    pub openai_base_url: String,

    /// API key, sent as a bearer token. Local servers usually need none.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, global = true)]
    pub openai_api_key: Option<String>,

    /// Model name. Default: gpt-4o-mini for openai; always "offline" for offline.
    #[arg(long, env = "LLM_MODEL", global = true)]
    pub llm_model: Option<String>,

    /// LLM calls in flight across this instance; more wait their turn.
    #[arg(long, env = "LLM_MAX_CONCURRENCY", default_value_t = 16, global = true)]
    pub llm_max_concurrency: usize,

    /// Time limit of one HTTP request to the LLM server, in seconds.
    #[arg(long, env = "LLM_TIMEOUT_SECS", default_value_t = 120, global = true)]
    pub llm_timeout_secs: u64,

    /// Retries of a failed request (429, 5xx, timeout, connection error)
    /// before the step fails.
    #[arg(long, env = "LLM_MAX_RETRIES", default_value_t = 5, global = true)]
    pub llm_max_retries: u32,

    /// How to ask the server for JSON: auto finds the mode it takes
    /// (json_schema, then json_object_schema, json_object, none) and keeps
    /// it for the process's life; a mode name uses that one only.
    #[arg(
        long,
        env = "LLM_STRUCTURED_OUTPUT",
        value_enum,
        default_value_t = StructuredOutput::Auto,
        global = true
    )]
    pub llm_structured_output: StructuredOutput,

    /// Largest answer asked for, in tokens (`max_tokens`). Steps ask for
    /// less first, and twice as much after an answer cut off at the limit.
    #[arg(long, env = "LLM_MAX_TOKENS", default_value_t = 16384, global = true)]
    pub llm_max_tokens: u32,

    /// Simulated latency of each offline call, in milliseconds (for benchmarks).
    #[arg(long, env = "OFFLINE_LATENCY_MS", default_value_t = 0, global = true)]
    pub offline_latency_ms: u64,
}

/// Settings end up in logs; the API key must not.
impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("llm_provider", &self.llm_provider)
            .field("openai_base_url", &self.openai_base_url)
            .field(
                "openai_api_key",
                &self.openai_api_key.as_ref().map(|_| "<hidden>"),
            )
            .field("llm_model", &self.llm_model)
            .field("llm_max_concurrency", &self.llm_max_concurrency)
            .field("llm_timeout_secs", &self.llm_timeout_secs)
            .field("llm_max_retries", &self.llm_max_retries)
            .field("llm_structured_output", &self.llm_structured_output)
            .field("llm_max_tokens", &self.llm_max_tokens)
            .field("offline_latency_ms", &self.offline_latency_ms)
            .finish()
    }
}

impl LlmSettings {
    /// The provider in effect: the one asked for, else `openai` when an API
    /// key is set, else `offline` (clap cannot express a default that
    /// depends on another variable).
    pub(crate) fn provider(&self) -> Provider {
        match (self.llm_provider, &self.openai_api_key) {
            (Some(provider), _) => provider,
            (None, Some(key)) if !key.trim().is_empty() => Provider::Openai,
            (None, _) => Provider::Offline,
        }
    }

    /// The model name in effect for the provider.
    pub(crate) fn model(&self) -> String {
        match self.provider() {
            Provider::Offline => offline::MODEL.to_owned(),
            Provider::Openai => self
                .llm_model
                .clone()
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_OPENAI_MODEL.to_owned()),
        }
    }
}

impl LlmSettings {
    /// The OpenAI client's configuration.
    ///
    /// # Errors
    /// Settings with which no request can work: the OpenAI API without a
    /// key, a zero timeout, a token limit too small for any lesson.
    pub(crate) fn openai_config(&self) -> Result<OpenAiConfig, LlmSettingsError> {
        let api_key = self.openai_api_key.clone().filter(|k| !k.trim().is_empty());
        if api_key.is_none() && self.openai_base_url.trim_end_matches('/') == DEFAULT_BASE_URL {
            return Err(LlmSettingsError::MissingApiKey);
        }
        if self.llm_timeout_secs == 0 {
            return Err(LlmSettingsError::ZeroTimeout);
        }
        if self.llm_max_tokens < 256 {
            return Err(LlmSettingsError::TooFewMaxTokens);
        }
        Ok(OpenAiConfig {
            base_url: self.openai_base_url.clone(),
            api_key,
            model: self.model(),
            timeout: Duration::from_secs(self.llm_timeout_secs),
            retry: RetryPolicy {
                max_retries: self.llm_max_retries,
                ..RetryPolicy::default()
            },
            structured_output: self.llm_structured_output,
            max_tokens: self.llm_max_tokens,
        })
    }
}
