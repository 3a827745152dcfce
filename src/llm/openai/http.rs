//! One question to the server over HTTP: the request, its repeats on
//! transient failures (429, 5xx, timeouts, connection errors) with jittered
//! exponential back-off that gives way to the server's `Retry-After`, and
//! the sorting of error replies into permanent, transient and "this server
//! does not take the `response_format`" (which the caller answers by
//! changing the mode, not by waiting).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tracing::warn;

use super::dialect;
use super::parse::{excerpt, parse_completion, Reply};
use crate::llm::LlmError;
use crate::retry::Backoff;

/// Why a question got no reply.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The server refused the request's `response_format` (400, 422 or 500
    /// about it): another mode may work, repeating this one will not.
    Format { status: u16, message: String },
    /// Anything else, after the repeats it deserved.
    Llm(LlmError),
}

/// The HTTP side of the client: where, with which key, how long, how often.
#[derive(Debug)]
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub url: Url,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl Transport {
    /// One question, repeated on transient failures.
    pub async fn complete(&self, body: &Value) -> Result<Reply, CallError> {
        let mut retries = 0;
        let mut backoff = self.retry.backoff();
        loop {
            let (transient, retry_after) = match self.send(body).await {
                Ok(reply) => return Ok(reply),
                Err(Failure::Format { status, message }) => {
                    return Err(CallError::Format { status, message })
                }
                Err(Failure::Permanent(error)) => return Err(CallError::Llm(error)),
                Err(Failure::Transient(t, retry_after)) => (t, retry_after),
            };
            if retries >= self.retry.max_retries {
                return Err(CallError::Llm(
                    transient.to_error(retries + 1, self.timeout),
                ));
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
        let asked_format = body.get("response_format").is_some();
        Err(classify_status(status, &text, retry_after, asked_format))
    }
}

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
    /// See [`CallError::Format`].
    Format {
        status: u16,
        message: String,
    },
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

/// Sorts an error status into permanent and transient, and, for a request
/// that carried a `response_format` (`asked_format`), a refusal of it.
fn classify_status(
    status: StatusCode,
    body: &str,
    retry_after: Option<Duration>,
    asked_format: bool,
) -> Failure {
    let details = ErrorDetails::parse(body);
    let message = details.message;
    if details.codes.iter().any(|c| c == "insufficient_quota") {
        return Failure::Permanent(LlmError::InsufficientQuota { message });
    }
    let code = status.as_u16();
    if asked_format && dialect::refuses_response_format(code, body) {
        return Failure::Format {
            status: code,
            message,
        };
    }
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
        // FastAPI (llama-cpp-python) validation errors: {"detail": [{"msg"}]}.
        let detail = || {
            let msgs: Vec<&str> = inner
                .get("detail")?
                .as_array()?
                .iter()
                .filter_map(|d| d.get("msg").and_then(Value::as_str))
                .collect();
            (!msgs.is_empty()).then(|| msgs.join("; "))
        };
        let message = inner
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(detail)
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
            classify_status(StatusCode::TOO_MANY_REQUESTS, body, None, true),
            Failure::Permanent(LlmError::InsufficientQuota { .. })
        ));
        assert!(matches!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, "{}", None, true),
            Failure::Transient(Transient::RateLimited(_), None)
        ));
        assert!(matches!(
            classify_status(StatusCode::BAD_REQUEST, r#"{"error":"bad key"}"#, None, true),
            Failure::Permanent(LlmError::Rejected { status: 400, ref message }) if message == "bad key"
        ));
    }

    #[test]
    fn a_refused_response_format_is_its_own_failure_only_when_one_was_sent() {
        let body = r#"{"detail":[{"type":"literal_error","loc":["body","response_format","type"],"msg":"Input should be 'text' or 'json_object'","input":"json_schema"}]}"#;
        assert!(matches!(
            classify_status(StatusCode::UNPROCESSABLE_ENTITY, body, None, true),
            Failure::Format { status: 422, ref message } if message == "Input should be 'text' or 'json_object'"
        ));
        assert!(matches!(
            classify_status(StatusCode::UNPROCESSABLE_ENTITY, body, None, false),
            Failure::Permanent(LlmError::Rejected { status: 422, .. })
        ));
        assert!(matches!(
            classify_status(StatusCode::INTERNAL_SERVER_ERROR, body, None, true),
            Failure::Format { status: 500, .. }
        ));
    }
}
