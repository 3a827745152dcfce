//! Structured-output dialects: the ways of asking an OpenAI-compatible
//! server for JSON of a given shape, and which of them a server takes.
//!
//! Servers differ: OpenAI, vLLM, LM Studio and Ollama take OpenAI's
//! `json_schema`; llama-cpp-python takes only `text` and `json_object`
//! (with an optional `schema` beside it) and answers anything else with a
//! validation error ("Input should be 'text' or 'json_object'"); older
//! llama.cpp servers answer "response_format type must be one of \"text\"
//! or \"json_object\""; LM Studio refuses `json_object` ("must be
//! 'json_schema' or 'text'"). In `auto`, the client starts with the
//! strictest mode and steps down ([`Mode::ALL`]'s order) when the server
//! says the `response_format` is the problem; the mode that worked is
//! remembered for the (base URL, model) pair for the life of the process,
//! and is where the next conversation starts.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use clap::ValueEnum;
use serde_json::{json, Value};
use tracing::info;

use crate::llm::schema::Schema;

/// A way of asking for structured output, strictest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// OpenAI's strict `{"type": "json_schema", "json_schema": {name, strict, schema}}`.
    JsonSchema,
    /// `{"type": "json_object", "schema": ...}`, as llama.cpp and
    /// llama-cpp-python take it (they turn the schema into a grammar).
    JsonObjectSchema,
    /// `{"type": "json_object"}`: any JSON; the schema is in the prompt.
    JsonObject,
    /// No `response_format`: the schema is in the prompt only.
    None,
}

impl Mode {
    /// Every mode, in the order `auto` tries them.
    pub const ALL: [Mode; 4] = [
        Mode::JsonSchema,
        Mode::JsonObjectSchema,
        Mode::JsonObject,
        Mode::None,
    ];

    /// The name used in `LLM_STRUCTURED_OUTPUT` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::JsonSchema => "json_schema",
            Mode::JsonObjectSchema => "json_object_schema",
            Mode::JsonObject => "json_object",
            Mode::None => "none",
        }
    }

    /// The `response_format` of a request in this mode: OpenAI's strict
    /// schema, or for grammar-building servers the grammar form.
    pub(crate) fn response_format(self, schema: &Schema) -> Option<Value> {
        match self {
            Mode::JsonSchema => Some(json!({
                "type": "json_schema",
                "json_schema": { "name": schema.name, "strict": true, "schema": schema.strict }
            })),
            Mode::JsonObjectSchema => {
                Some(json!({ "type": "json_object", "schema": schema.grammar }))
            }
            Mode::JsonObject => Some(json!({ "type": "json_object" })),
            Mode::None => None,
        }
    }

    /// Whether the prompt itself must carry the schema (the server does
    /// not see it, or only as a grammar the model cannot read).
    pub(crate) fn schema_in_prompt(self) -> bool {
        self != Mode::JsonSchema
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `LLM_STRUCTURED_OUTPUT`: one mode, or `auto` to find the one the server takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StructuredOutput {
    /// Try json_schema, json_object_schema, json_object, none, in this
    /// order, stepping down when the server refuses the response_format.
    #[default]
    Auto,
    /// OpenAI's strict json_schema (OpenAI, vLLM, LM Studio, Ollama, recent llama.cpp).
    #[value(name = "json_schema")]
    JsonSchema,
    /// json_object with a schema (llama-cpp-python, llama.cpp).
    #[value(name = "json_object_schema")]
    JsonObjectSchema,
    /// json_object; the schema is in the prompt.
    #[value(name = "json_object")]
    JsonObject,
    /// No response_format; the schema is in the prompt.
    None,
}

impl StructuredOutput {
    /// The one mode asked for; `None` for `auto`.
    pub fn fixed(self) -> Option<Mode> {
        match self {
            Self::Auto => None,
            Self::JsonSchema => Some(Mode::JsonSchema),
            Self::JsonObjectSchema => Some(Mode::JsonObjectSchema),
            Self::JsonObject => Some(Mode::JsonObject),
            Self::None => Some(Mode::None),
        }
    }
}

/// Fragments of the bodies with which servers refuse a `response_format`
/// (lower case): OpenAI and LM Studio name the field, llama-cpp-python's
/// validation error names its location (`'response_format', 'type'`) and
/// the types it takes, llama.cpp and LocalAI mention the grammar they
/// could not build.
const REFUSALS: &[&str] = &[
    "response_format",
    "response format",
    "json_schema",
    "json_object",
    "input should be 'text'",
    "grammar",
];

/// Whether an error reply says the server does not take the request's
/// `response_format` (as opposed to a broken server or a bad key): a 400,
/// 422 or 500 whose body is about it.
pub(crate) fn refuses_response_format(status: u16, body: &str) -> bool {
    if !matches!(status, 400 | 422 | 500) {
        return false;
    }
    let body = body.to_lowercase();
    REFUSALS.iter().any(|fragment| body.contains(fragment))
}

/// The modes learned, per (base URL, model), for the life of the process.
fn learned() -> &'static Mutex<HashMap<(String, String), Mode>> {
    static LEARNED: OnceLock<Mutex<HashMap<(String, String), Mode>>> = OnceLock::new();
    LEARNED.get_or_init(Mutex::default)
}

/// The mode that last worked with this server and model, if any did.
pub(crate) fn remembered(base_url: &str, model: &str) -> Option<Mode> {
    let learned = learned().lock().unwrap_or_else(|e| e.into_inner());
    learned
        .get(&(base_url.to_owned(), model.to_owned()))
        .copied()
}

/// Records that `mode` worked; logged the first time (and on a change), not
/// on every call.
pub(crate) fn remember(base_url: &str, model: &str, mode: Mode) {
    let mut learned = learned().lock().unwrap_or_else(|e| e.into_inner());
    let previous = learned.insert((base_url.to_owned(), model.to_owned()), mode);
    if previous != Some(mode) {
        info!(
            base_url,
            model,
            mode = mode.as_str(),
            "LLM structured output mode in use"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusals_of_known_servers_are_recognised() {
        // llama-cpp-python (FastAPI validation, wrapped in a 500).
        let llama_cpp_python = r#"{"error":{"message":"[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}]","type":"internal_server_error"}}"#;
        assert!(refuses_response_format(500, llama_cpp_python));
        // llama.cpp's llama-server.
        let llama_server = r#"{"error":{"code":500,"message":"response_format type must be one of \"text\" or \"json_object\", but got: json_schema","type":"server_error"}}"#;
        assert!(refuses_response_format(500, llama_server));
        // LM Studio.
        let lm_studio = r#"{"error":"'response_format.type' must be 'json_schema' or 'text'"}"#;
        assert!(refuses_response_format(400, lm_studio));
        assert!(refuses_response_format(
            422,
            r#"{"detail":[{"msg":"Input should be 'text' or 'json_object'"}]}"#
        ));
        // Not about the format, or not a status that means "this request".
        assert!(!refuses_response_format(
            500,
            r#"{"error":{"message":"CUDA out of memory"}}"#
        ));
        assert!(!refuses_response_format(503, lm_studio));
        assert!(!refuses_response_format(401, lm_studio));
    }

    #[test]
    fn a_learned_mode_is_kept_per_server_and_model() {
        let url = "http://dialect-test.invalid/v1";
        assert_eq!(remembered(url, "a"), None);
        remember(url, "a", Mode::JsonObject);
        assert_eq!(remembered(url, "a"), Some(Mode::JsonObject));
        assert_eq!(remembered(url, "b"), None);
    }

    #[test]
    fn modes_shape_the_response_format() {
        let schema = crate::llm::schema::lesson_schema(2);
        let format = |mode: Mode| mode.response_format(&schema);
        let strict = format(Mode::JsonSchema).unwrap();
        assert_eq!(strict["json_schema"]["schema"], schema.strict);
        assert_eq!(strict["json_schema"]["strict"], true);
        assert_eq!(
            format(Mode::JsonObjectSchema).unwrap(),
            json!({"type": "json_object", "schema": schema.grammar})
        );
        assert_eq!(
            format(Mode::JsonObject).unwrap(),
            json!({"type": "json_object"})
        );
        assert_eq!(format(Mode::None), None);
    }
}
