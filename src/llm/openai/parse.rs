//! Reading what real servers and models send back: a chat completion in
//! the shapes servers use, and the JSON answer inside the text models
//! write around it (a Markdown fence, a sentence of prose, a reasoning
//! model's `<think>` notes, or nothing but a `reasoning_content`).

use serde::Deserialize;
use serde_json::Value;

use super::super::validate::InvalidAnswer;
use super::super::LlmError;
use crate::domain::TokenUsage;

/// The parts of a completion that matter here.
#[derive(Debug)]
pub(crate) struct Reply {
    pub content: Option<String>,
    /// What reasoning models put beside the answer (`reasoning_content`
    /// in vLLM, llama.cpp and DeepSeek; `reasoning` in Ollama).
    pub reasoning: Option<String>,
    pub refusal: Option<String>,
    pub finish_reason: Option<String>,
    /// `None` when the server sent no `usage`.
    pub usage: Option<TokenUsage>,
    /// The model that answered, as the server names it.
    pub model: Option<String>,
}

impl Reply {
    /// Whether the answer was cut off at the token budget.
    pub fn truncated(&self) -> bool {
        self.finish_reason.as_deref() == Some("length")
    }

    /// Whether a cut-off answer ended well before the `budget` asked for:
    /// the server's own limit (its context window) cut it, and a larger
    /// budget would not help. Unknown without a token count.
    pub fn stopped_short_of(&self, budget: u32) -> bool {
        self.usage
            .is_some_and(|u| u.completion_tokens.saturating_mul(10) < u64::from(budget) * 9)
    }

    /// The tokens of this reply: the server's count, else an estimate from
    /// the characters of the request's messages and of the answer, marked
    /// as estimated.
    pub fn usage_or_estimate(&self, request: &Value) -> TokenUsage {
        if let Some(usage) = self.usage {
            return usage;
        }
        let prompt_chars: usize = request["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"].as_str())
            .map(str::len)
            .sum();
        let completion_chars = self.content.as_deref().map_or(0, str::len)
            + self.reasoning.as_deref().map_or(0, str::len);
        let prompt_tokens = estimate_tokens(prompt_chars);
        let completion_tokens = estimate_tokens(completion_chars);
        TokenUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            estimated: true,
        }
    }

    /// The answer's text without reasoning notes: `content`, else (when a
    /// server put everything in the reasoning field) what follows the
    /// reasoning there.
    pub fn answer_text(&self) -> String {
        let content = self.content.as_deref().map(strip_think).unwrap_or_default();
        if !content.trim().is_empty() {
            return content;
        }
        self.reasoning
            .as_deref()
            .map(strip_think)
            .unwrap_or_default()
    }

    /// The JSON value the model answered with, unless the reply itself
    /// says it is unusable. The message is for the model's re-ask.
    pub fn answer_json(&self) -> Result<Value, InvalidAnswer> {
        if let Some(refusal) = &self.refusal {
            return Err(InvalidAnswer(format!("the model refused: {refusal}")));
        }
        if self.truncated() {
            return Err(InvalidAnswer(
                "the answer was cut off at the length limit; give a complete but more \
                 concise JSON answer"
                    .into(),
            ));
        }
        let text = self.answer_text();
        if text.trim().is_empty() {
            return Err(InvalidAnswer("the answer is empty".into()));
        }
        find_json(&text).map_err(InvalidAnswer)
    }
}

/// About four characters per token, the usual rule of thumb for English
/// text and JSON with BPE tokenizers; rounded up.
pub(crate) fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// Removes reasoning notes: every `<think>…</think>` block, an unclosed
/// `<think>` and all after it (notes cut off at the budget), and notes
/// before a lone `</think>` (templates that open the block in the prompt).
pub(crate) fn strip_think(text: &str) -> String {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let mut rest = text;
    // A closing tag before any opening one: the notes began in the prompt.
    if let Some(close) = rest.find(CLOSE) {
        if rest.find(OPEN).is_none_or(|open| open > close) {
            rest = &rest[close + CLOSE.len()..];
        }
    }
    let mut out = String::with_capacity(rest.len());
    while let Some(open) = rest.find(OPEN) {
        out.push_str(&rest[..open]);
        match rest[open..].find(CLOSE) {
            Some(close) => rest = &rest[open + close + CLOSE.len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// The JSON object in a model's text: the whole text, else the first
/// Markdown code fence holding one, else the first `{...}` that parses
/// (JSON after a sentence of prose, or before one). A text that starts as
/// an object is that object or broken: the fences inside its strings (code
/// examples of a lesson) are not the answer.
///
/// # Errors
/// What the model is told: why the text holds no answer object.
pub(crate) fn find_json(text: &str) -> Result<Value, String> {
    let text = text.trim();
    let object = |s: &str| {
        serde_json::from_str::<Value>(s.trim())
            .ok()
            .filter(Value::is_object)
    };
    if text.starts_with('{') {
        // The object, possibly followed by prose; raw line breaks and tabs
        // inside its strings (which small models write) escaped if need be.
        let first = |text: &str| {
            let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            values.next()
        };
        return match first(text) {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => match first(&escape_controls_in_strings(text)) {
                Some(Ok(value)) => Ok(value),
                _ => Err(format!("the answer is not valid JSON ({e})")),
            },
            None => Err("the answer is empty".into()),
        };
    }
    let mut fences = text.split("```").skip(1).step_by(2);
    if let Some(value) = fences.find_map(|block| {
        let block = block.strip_prefix("json").unwrap_or(block);
        object(block)
    }) {
        return Ok(value);
    }
    text.match_indices('{')
        .take(64)
        .find_map(|(i, _)| {
            let mut values = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
            values.next()?.ok().filter(Value::is_object)
        })
        .ok_or_else(|| {
            "the answer is not JSON: it holds no JSON object; answer with the JSON object only"
                .to_owned()
        })
}

/// `text` with the control characters inside JSON strings escaped
/// (`\n`, `\t`, `\u0001`), which strict JSON forbids raw.
fn escape_controls_in_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string && !escaped && c.is_control() && (c as u32) < 0x20 {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push_str(&format!("\\u{:04x}", c as u32)),
            }
            continue;
        }
        out.push(c);
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
    }
    out
}

#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    model: Option<String>,
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
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
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

/// Reads a chat completion body.
///
/// # Errors
/// [`LlmError::Protocol`] when it is not one.
pub(crate) fn parse_completion(text: &str) -> Result<Reply, LlmError> {
    let completion: ChatCompletion =
        serde_json::from_str(text).map_err(|e| LlmError::Protocol {
            message: format!("{e}: {}", excerpt(text)),
        })?;
    // Some servers send `"usage": {}` or zeros when they do not count.
    let usage = completion
        .usage
        .filter(|u| u.prompt_tokens + u.completion_tokens + u.total_tokens.unwrap_or(0) > 0)
        .map(|u| TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u
                .total_tokens
                .unwrap_or(u.prompt_tokens + u.completion_tokens),
            estimated: false,
        });
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Protocol {
            message: "the completion has no choices".into(),
        })?;
    Ok(Reply {
        content: choice.message.content,
        reasoning: choice.message.reasoning_content,
        refusal: choice.message.refusal,
        finish_reason: choice.finish_reason,
        usage,
        model: completion.model,
    })
}

/// At most 300 characters of a body, for error messages.
pub(crate) fn excerpt(text: &str) -> String {
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
    use serde_json::json;

    use super::*;

    #[test]
    fn json_is_found_in_fences_after_prose_and_alone() {
        let want = Ok(json!({"a": 1}));
        assert_eq!(find_json(" {\"a\":1} "), want);
        assert_eq!(find_json("```json\n{\"a\":1}\n```"), want);
        assert_eq!(find_json("Here it is:\n```\n{\"a\":1}\n```\nEnjoy."), want);
        assert_eq!(
            find_json("Sure! Here is the outline: {\"a\":1} Hope it helps {x}."),
            want
        );
        assert_eq!(find_json("I think {so} but {\"a\":1}"), want);
        assert_eq!(find_json("{\"a\":1}\nThat is all."), want);
        // Raw line breaks and tabs inside strings, as small models write them.
        assert_eq!(
            find_json("{\"a\": \"two\nlines\tand \\\"quotes\\\"\"}\n"),
            Ok(json!({"a": "two\nlines\tand \"quotes\""}))
        );
        assert!(find_json("no json here")
            .unwrap_err()
            .contains("no JSON object"));
        assert!(find_json("[1, 2]").is_err());
        // An object with a fenced example inside a string, cut short: broken,
        // not the example.
        let broken = "{\"content_md\": \"Try:\\n```json\\n{\\\"x\\\": 1}\\n```\" \"quiz\": []}";
        assert!(
            find_json(broken).unwrap_err().contains("not valid JSON"),
            "{:?}",
            find_json(broken)
        );
    }

    #[test]
    fn reasoning_notes_are_stripped() {
        assert_eq!(
            strip_think("<think>\nhmm {\"x\":0}\n</think>\n\n{\"a\":1}"),
            "{\"a\":1}"
        );
        assert_eq!(strip_think("a<think>x</think>b<think>y</think>c"), "abc");
        assert_eq!(
            strip_think("notes of the prompt's block</think>{\"a\":1}"),
            "{\"a\":1}"
        );
        assert_eq!(
            strip_think("{\"a\":1}<think>cut off at the bud"),
            "{\"a\":1}"
        );
        assert_eq!(strip_think("plain"), "plain");
    }

    #[test]
    fn an_answer_only_in_the_reasoning_field_is_read_from_there() {
        let body = json!({
            "choices": [{"message": {"content": null, "reasoning_content": "<think>plan</think>{\"a\":1}"}, "finish_reason": "stop"}]
        });
        let reply = parse_completion(&body.to_string()).unwrap();
        assert_eq!(reply.answer_json().unwrap(), json!({"a": 1}));
        assert!(reply.usage.is_none());
    }

    #[test]
    fn a_missing_usage_is_estimated_and_marked() {
        let reply =
            parse_completion(r#"{"choices":[{"message":{"content":"12345678"}}]}"#).unwrap();
        let request = json!({"messages": [{"role": "user", "content": "abcd"}]});
        let usage = reply.usage_or_estimate(&request);
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (1, 2, 3)
        );
        assert!(usage.estimated);
        let counted = parse_completion(
            r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!(counted.usage_or_estimate(&request).total_tokens, 12);
        assert!(!counted.usage_or_estimate(&request).estimated);
    }
}
