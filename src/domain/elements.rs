//! A lesson's interactive elements: code blocks, exercises and quizzes of
//! four kinds, as structured data beside the lesson's markdown (recorded in
//! `LessonGenerated`, never parsed back out of the markdown).
//!
//! Each element has an id, stable because it is recorded in the event:
//! every read, replay and export shows the same one.

use serde::{Deserialize, Serialize};

use super::metadata::Difficulty;

/// One element of a lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractiveElement {
    /// Unique within the lesson (`l2-code-1`, ...).
    pub id: String,
    #[serde(flatten)]
    pub body: ElementBody,
}

/// What an element is; `kind` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ElementBody {
    /// Code to read or run.
    CodeBlock {
        language: String,
        code: String,
        #[serde(default)]
        caption: String,
        /// What running it prints, when that is meaningful.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_output: Option<String>,
    },
    /// A task with hints and its worked solution.
    Exercise {
        prompt: String,
        #[serde(default)]
        hints: Vec<String>,
        solution: String,
        difficulty: Difficulty,
    },
    /// One correct option.
    SingleChoice {
        question: String,
        options: Vec<String>,
        answer_index: u32,
        #[serde(default)]
        explanation: String,
    },
    /// One or more correct options.
    MultipleChoice {
        question: String,
        options: Vec<String>,
        answer_indexes: Vec<u32>,
        #[serde(default)]
        explanation: String,
    },
    /// A statement that is true or false.
    TrueFalse {
        question: String,
        answer: bool,
        #[serde(default)]
        explanation: String,
    },
    /// A free answer, right when it matches one of the accepted answers.
    ShortAnswer {
        question: String,
        accepted_answers: Vec<String>,
        #[serde(default)]
        explanation: String,
    },
}

impl ElementBody {
    /// The `kind` name, as JSON and the `interactive_elements` table have it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CodeBlock { .. } => "code_block",
            Self::Exercise { .. } => "exercise",
            Self::SingleChoice { .. } => "single_choice",
            Self::MultipleChoice { .. } => "multiple_choice",
            Self::TrueFalse { .. } => "true_false",
            Self::ShortAnswer { .. } => "short_answer",
        }
    }

    /// Whether it is an exercise (exercises count in the duration estimate).
    pub fn is_exercise(&self) -> bool {
        matches!(self, Self::Exercise { .. })
    }

    /// Whether it is a quiz question of any kind.
    pub fn is_question(&self) -> bool {
        matches!(
            self,
            Self::SingleChoice { .. }
                | Self::MultipleChoice { .. }
                | Self::TrueFalse { .. }
                | Self::ShortAnswer { .. }
        )
    }
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Checks a lesson's elements: ids present and unique, code blocks naming
/// their language, exercises with a solution, answers within the options,
/// short answers with an accepted answer. The message says which element
/// and what to fix (it is sent back to a model in a re-ask).
///
/// # Errors
/// The first problem found.
pub fn validate(elements: &[InteractiveElement]) -> Result<(), String> {
    let mut ids: Vec<&str> = Vec::with_capacity(elements.len());
    for (i, e) in elements.iter().enumerate() {
        let at = format!("element {} ({})", i + 1, e.body.kind());
        if blank(&e.id) {
            return Err(format!("{at} has no id"));
        }
        if ids.contains(&e.id.as_str()) {
            return Err(format!(
                "element id {:?} is used twice: ids must be unique within the lesson",
                e.id
            ));
        }
        ids.push(&e.id);
        match &e.body {
            ElementBody::CodeBlock { language, code, .. } => {
                if blank(language) {
                    return Err(format!("{at} must name its language"));
                }
                if blank(code) {
                    return Err(format!("{at} has no code"));
                }
            }
            ElementBody::Exercise {
                prompt, solution, ..
            } => {
                if blank(prompt) {
                    return Err(format!("{at} has no prompt"));
                }
                if blank(solution) {
                    return Err(format!("{at} has no solution: every exercise needs one"));
                }
            }
            ElementBody::SingleChoice {
                question,
                options,
                answer_index,
                ..
            } => {
                choices(&at, question, options)?;
                if *answer_index as usize >= options.len() {
                    return Err(format!(
                        "{at} has answer_index {answer_index} but only {} options (indexes start at 0)",
                        options.len()
                    ));
                }
            }
            ElementBody::MultipleChoice {
                question,
                options,
                answer_indexes,
                ..
            } => {
                choices(&at, question, options)?;
                if answer_indexes.is_empty() {
                    return Err(format!("{at} needs at least one correct option"));
                }
                if let Some(bad) = answer_indexes
                    .iter()
                    .find(|i| **i as usize >= options.len())
                {
                    return Err(format!(
                        "{at} has answer index {bad} but only {} options (indexes start at 0)",
                        options.len()
                    ));
                }
                let mut sorted = answer_indexes.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != answer_indexes.len() {
                    return Err(format!("{at} names a correct option twice"));
                }
            }
            ElementBody::TrueFalse { question, .. } => {
                if blank(question) {
                    return Err(format!("{at} has no statement"));
                }
            }
            ElementBody::ShortAnswer {
                question,
                accepted_answers,
                ..
            } => {
                if blank(question) {
                    return Err(format!("{at} has no question"));
                }
                if accepted_answers.iter().all(|a| blank(a)) {
                    return Err(format!("{at} needs at least one accepted answer"));
                }
            }
        }
    }
    Ok(())
}

fn choices(at: &str, question: &str, options: &[String]) -> Result<(), String> {
    if blank(question) {
        return Err(format!("{at} has no question"));
    }
    if options.len() < 2 {
        return Err(format!(
            "{at} must have at least 2 options, it has {}",
            options.len()
        ));
    }
    if options.iter().any(|o| blank(o)) {
        return Err(format!("{at} has an empty option"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn element(id: &str, body: ElementBody) -> InteractiveElement {
        InteractiveElement {
            id: id.into(),
            body,
        }
    }

    fn code(language: &str) -> ElementBody {
        ElementBody::CodeBlock {
            language: language.into(),
            code: "print(1)".into(),
            caption: String::new(),
            expected_output: Some("1".into()),
        }
    }

    #[test]
    fn elements_read_and_write_with_their_kind() {
        let e = element("c1", code("python"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"id": "c1", "kind": "code_block", "language": "python", "code": "print(1)",
                   "caption": "", "expected_output": "1"})
        );
        assert_eq!(serde_json::from_value::<InteractiveElement>(v).unwrap(), e);
        let tf: InteractiveElement = serde_json::from_value(
            json!({"id": "t", "kind": "true_false", "question": "Sky is blue", "answer": true}),
        )
        .unwrap();
        assert_eq!(tf.body.kind(), "true_false");
    }

    #[test]
    fn every_rule_is_checked() {
        let ok = validate(&[
            element("a", code("rust")),
            element(
                "b",
                ElementBody::MultipleChoice {
                    question: "q".into(),
                    options: vec!["x".into(), "y".into(), "z".into()],
                    answer_indexes: vec![0, 2],
                    explanation: String::new(),
                },
            ),
        ]);
        assert_eq!(ok, Ok(()));
        let bad = |e: InteractiveElement| validate(&[e]).unwrap_err();
        assert!(bad(element("a", code(" "))).contains("must name its language"));
        assert!(bad(element(
            "a",
            ElementBody::Exercise {
                prompt: "p".into(),
                hints: vec![],
                solution: "".into(),
                difficulty: Difficulty::Beginner,
            }
        ))
        .contains("no solution"));
        assert!(bad(element(
            "a",
            ElementBody::SingleChoice {
                question: "q".into(),
                options: vec!["x".into(), "y".into()],
                answer_index: 2,
                explanation: String::new(),
            }
        ))
        .contains("answer_index 2"));
        assert!(bad(element(
            "a",
            ElementBody::MultipleChoice {
                question: "q".into(),
                options: vec!["x".into(), "y".into()],
                answer_indexes: vec![1, 5],
                explanation: String::new(),
            }
        ))
        .contains("answer index 5"));
        assert!(bad(element(
            "a",
            ElementBody::ShortAnswer {
                question: "q".into(),
                accepted_answers: vec![" ".into()],
                explanation: String::new(),
            }
        ))
        .contains("accepted answer"));
        assert!(bad(element(" ", code("rust"))).contains("no id"));
        let twice = validate(&[element("a", code("rust")), element("a", code("sql"))]);
        assert!(twice.unwrap_err().contains("used twice"));
    }
}
