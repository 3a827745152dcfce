//! The interactive elements as the model writes them: one flat object per
//! element (strict structured output has no tagged unions that every server
//! accepts), turned into the domain's [`InteractiveElement`]s. Fields a kind
//! does not use are ignored; a missing field of the kind becomes empty, and
//! `domain::elements::validate` then says what to fix in a re-ask.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::domain::{Difficulty, ElementBody, InteractiveElement};

/// The kinds the model may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ElementKind {
    CodeBlock,
    Exercise,
    SingleChoice,
    MultipleChoice,
    TrueFalse,
    ShortAnswer,
}

/// One element of the lesson schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ElementAnswer {
    #[serde(default)]
    pub id: String,
    pub kind: ElementKind,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub caption: String,
    #[serde(default)]
    pub expected_output: Option<String>,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub hints: Vec<String>,
    #[serde(default)]
    pub solution: String,
    #[serde(default)]
    pub difficulty: Option<String>,
    #[serde(default)]
    pub question: String,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub answer_indexes: Vec<u32>,
    #[serde(default)]
    pub answer: Option<bool>,
    #[serde(default)]
    pub accepted_answers: Vec<String>,
    #[serde(default)]
    pub explanation: String,
}

/// The model's elements as the domain's, numbered `l<lesson>-<n>` where the
/// model gave no id. An exercise of a difficulty outside the three takes
/// `fallback` (the course's); a true/false without an answer is false.
pub(crate) fn into_elements(
    answers: Vec<ElementAnswer>,
    lesson: u32,
    fallback: Difficulty,
) -> Vec<InteractiveElement> {
    answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let id = match a.id.trim() {
                "" => format!("l{lesson}-{}", i + 1),
                id => id.to_owned(),
            };
            let body = match a.kind {
                ElementKind::CodeBlock => ElementBody::CodeBlock {
                    language: a.language.trim().to_lowercase(),
                    code: a.code,
                    caption: a.caption,
                    expected_output: a.expected_output.filter(|o| !o.trim().is_empty()),
                },
                ElementKind::Exercise => ElementBody::Exercise {
                    prompt: a.prompt,
                    hints: a.hints,
                    solution: a.solution,
                    difficulty: a
                        .difficulty
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(fallback),
                },
                ElementKind::SingleChoice => ElementBody::SingleChoice {
                    question: a.question,
                    options: a.options,
                    answer_index: a.answer_indexes.first().copied().unwrap_or(u32::MAX),
                    explanation: a.explanation,
                },
                ElementKind::MultipleChoice => ElementBody::MultipleChoice {
                    question: a.question,
                    options: a.options,
                    answer_indexes: a.answer_indexes,
                    explanation: a.explanation,
                },
                ElementKind::TrueFalse => ElementBody::TrueFalse {
                    question: a.question,
                    answer: a.answer.unwrap_or(false),
                    explanation: a.explanation,
                },
                ElementKind::ShortAnswer => ElementBody::ShortAnswer {
                    question: a.question,
                    accepted_answers: a.accepted_answers,
                    explanation: a.explanation,
                },
            };
            InteractiveElement { id, body }
        })
        .collect()
}

/// The properties of one element in the strict lesson schema.
pub(crate) fn element_properties() -> Value {
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    json!({
        "id": { "type": "string" },
        "kind": { "type": "string", "enum": ["code_block", "exercise", "single_choice",
                                             "multiple_choice", "true_false", "short_answer"] },
        "language": { "type": "string" },
        "code": { "type": "string" },
        "caption": { "type": "string" },
        "expected_output": { "type": ["string", "null"] },
        "prompt": { "type": "string" },
        "hints": strings,
        "solution": { "type": "string" },
        "difficulty": { "type": ["string", "null"], "enum": ["beginner", "intermediate", "advanced", null] },
        "question": { "type": "string" },
        "options": strings,
        "answer_indexes": { "type": "array", "items": { "type": "integer" } },
        "answer": { "type": ["boolean", "null"] },
        "accepted_answers": strings,
        "explanation": { "type": "string" }
    })
}

/// The elements of the lesson schema's grammar form, for servers that turn
/// the schema into a grammar: one object shape per kind (`anyOf`, which
/// both llama.cpp converters take), with only that kind's fields, the texts
/// validation requires non-empty, and four options with indexes among them,
/// so that a small model cannot write an element validation refuses.
pub(crate) fn grammar_elements() -> Value {
    let text = json!({ "type": "string", "minLength": 1 });
    let texts = |min: usize, max: usize| json!({ "type": "array", "items": text, "minItems": min, "maxItems": max });
    let indexes = |min: usize, max: usize| {
        json!({ "type": "array", "items": { "enum": [0, 1, 2, 3] },
                "minItems": min, "maxItems": max })
    };
    let kind = |kind: &str, fields: Value| {
        let mut properties = json!({
            "id": text,
            "kind": { "const": kind },
        });
        let map = properties.as_object_mut().expect("an object");
        map.extend(fields.as_object().expect("an object").clone());
        let required: Vec<String> = map.keys().cloned().collect();
        json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false
        })
    };
    json!({
        "type": "array",
        "items": { "anyOf": [
            kind("code_block", json!({
                "language": text, "code": text, "caption": { "type": "string" },
                "expected_output": { "type": ["string", "null"] }
            })),
            kind("exercise", json!({
                "prompt": text, "hints": texts(0, 3), "solution": text,
                "difficulty": { "enum": ["beginner", "intermediate", "advanced"] }
            })),
            kind("single_choice", json!({
                "question": text, "options": texts(4, 4), "answer_indexes": indexes(1, 1),
                "explanation": { "type": "string" }
            })),
            kind("multiple_choice", json!({
                "question": text, "options": texts(4, 4), "answer_indexes": indexes(1, 4),
                "explanation": { "type": "string" }
            })),
            kind("true_false", json!({
                "question": text, "answer": { "type": "boolean" },
                "explanation": { "type": "string" }
            })),
            kind("short_answer", json!({
                "question": text, "accepted_answers": texts(1, 3),
                "explanation": { "type": "string" }
            })),
        ] },
        "maxItems": 8
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_answers_become_elements_of_their_kind() {
        let answers: Vec<ElementAnswer> = serde_json::from_value(json!([
            {"kind": "code_block", "language": "Rust", "code": "fn main() {}", "expected_output": ""},
            {"id": "ex", "kind": "exercise", "prompt": "p", "solution": "s", "difficulty": "hard"},
            {"kind": "single_choice", "question": "q", "options": ["a", "b"], "answer_indexes": [1]},
            {"kind": "true_false", "question": "t", "answer": true}
        ]))
        .unwrap();
        let elements = into_elements(answers, 2, Difficulty::Beginner);
        assert_eq!(elements[0].id, "l2-1");
        assert_eq!(
            elements[0].body,
            ElementBody::CodeBlock {
                language: "rust".into(),
                code: "fn main() {}".into(),
                caption: String::new(),
                expected_output: None
            }
        );
        assert_eq!(elements[1].id, "ex");
        assert!(matches!(
            elements[1].body,
            ElementBody::Exercise {
                difficulty: Difficulty::Beginner,
                ..
            }
        ));
        assert!(matches!(
            elements[2].body,
            ElementBody::SingleChoice {
                answer_index: 1,
                ..
            }
        ));
        assert!(matches!(
            elements[3].body,
            ElementBody::TrueFalse { answer: true, .. }
        ));
        assert!(crate::domain::elements::validate(&elements).is_ok());
    }
}
