//! `coursegen llm check`: one tiny structured question to the configured
//! server, to learn before generating anything whether it works (and in
//! which structured-output mode), or why not in one line.

use super::openai::{CheckReport, OpenAiClient};
use super::{LlmError, LlmSettings, LlmSettingsError, Provider};

/// What the check found.
#[derive(Debug)]
pub enum CheckOutcome {
    /// `LLM_PROVIDER` is `offline`: no server to ask.
    Offline,
    /// The server answered the structured question.
    Works(CheckReport),
}

/// Why the configured server cannot generate courses.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Settings(#[from] LlmSettingsError),
    #[error("{headline}: {source}")]
    Failed {
        /// The reason in a few words (unreachable, 401, model not found, ...).
        headline: &'static str,
        source: LlmError,
    },
}

/// Asks the server of `settings` one structured question, once (no
/// repeats: a check should answer quickly).
///
/// # Errors
/// [`CheckError`], with a headline saying what is wrong.
pub async fn check(settings: &LlmSettings) -> Result<CheckOutcome, CheckError> {
    if settings.provider() == Provider::Offline {
        return Ok(CheckOutcome::Offline);
    }
    let mut config = settings.openai_config()?;
    config.retry.max_retries = 0;
    let client = OpenAiClient::new(config)?;
    client
        .check()
        .await
        .map(CheckOutcome::Works)
        .map_err(|source| CheckError::Failed {
            headline: headline(&source),
            source,
        })
}

/// The reason of a failed check in a few words.
fn headline(error: &LlmError) -> &'static str {
    match error {
        LlmError::Connection { .. } => "unreachable",
        LlmError::Timeout { .. } => "no answer in time",
        LlmError::Unauthorized { .. } => "401: the API key was refused",
        LlmError::Forbidden { .. } => "403: access refused",
        LlmError::NotFound { .. } => "model not found (or no chat completions at this URL)",
        LlmError::Rejected { message, .. } if is_about_a_missing_model(message) => {
            "model not found"
        }
        LlmError::Rejected { .. } => "request rejected",
        LlmError::InsufficientQuota { .. } => "out of quota",
        LlmError::RateLimited { .. } => "rate-limited",
        LlmError::Server { .. } => "server error",
        LlmError::Protocol { .. } => "not an OpenAI-compatible server",
        LlmError::StructuredOutput { .. } | LlmError::InvalidAnswer { .. } => {
            "no structured output at all"
        }
    }
}

/// Servers that answer an unknown model with 400 rather than 404.
fn is_about_a_missing_model(message: &str) -> bool {
    let message = message.to_lowercase();
    message.contains("model")
        && ["not found", "does not exist", "no such", "not loaded"]
            .iter()
            .any(|m| message.contains(m))
}
