//! Subtitle translation: the model gets a lesson's cue texts, numbered, and
//! answers with one translated text per cue; the timings are kept as they
//! are. An answer with a cue missing or too long for two lines of 42
//! characters is re-asked with the reason.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::prompts::Prompt;
use super::validate::InvalidAnswer;
use crate::domain::subtitles::{wrap, Cue, MAX_LINES, MAX_LINE_CHARS};
use crate::domain::{CourseRequested, SubtitlesGenerated, TokenUsage};

/// Name of the translation schema in `response_format`.
pub(crate) const SCHEMA_NAME: &str = "subtitle_translation";

/// The model's translation, as the schema shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TranslationAnswer {
    pub cues: Vec<String>,
}

/// The prompt asking for lesson `lesson`'s cues in `language`.
pub(crate) fn prompt(
    course: &CourseRequested,
    lesson: u32,
    cues: &[Cue],
    language: &str,
) -> Prompt {
    let system = format!(
        "You translate video subtitles. You keep each cue's meaning and tone, translate \
         cue by cue (never merging or splitting cues), and keep every cue short enough \
         for {MAX_LINES} lines of {MAX_LINE_CHARS} characters. You answer with JSON only, \
         matching the given schema."
    );
    let mut user = format!(
        "Translate the subtitles of lesson {lesson} of a course on \"{}\" from the language \
         with BCP-47 tag \"{}\" into the language with BCP-47 tag \"{language}\".\n\
         Return cues: exactly {} strings, the translation of each cue in order.\n\nCues:\n",
        course.topic,
        course.language,
        cues.len()
    );
    for (i, c) in cues.iter().enumerate() {
        let _ = writeln!(user, "{}. {}", i + 1, c.text.replace('\n', " "));
    }
    Prompt { system, user }
}

/// JSON schema of [`TranslationAnswer`] (strict).
pub(crate) fn schema() -> Value {
    json!({
        "type": "object",
        "properties": { "cues": { "type": "array", "items": { "type": "string" } } },
        "required": ["cues"],
        "additionalProperties": false
    })
}

/// The translated track: the source timings with the answer's texts,
/// wrapped into the lines.
///
/// # Errors
/// A cue count that differs from the source's, a cue empty or too long.
pub(crate) fn accept(
    answer: TranslationAnswer,
    source: &[Cue],
    lesson: u32,
    language: &str,
    model: &str,
) -> Result<SubtitlesGenerated, InvalidAnswer> {
    if answer.cues.len() != source.len() {
        return Err(InvalidAnswer(format!(
            "there are {} cues to translate, the answer has {}",
            source.len(),
            answer.cues.len()
        )));
    }
    let mut cues = Vec::with_capacity(source.len());
    for (i, (text, cue)) in answer.cues.iter().zip(source).enumerate() {
        let text = match wrap(text) {
            Some(t) if !t.trim().is_empty() => t,
            _ => {
                return Err(InvalidAnswer(format!(
                    "cue {} must be a non-empty text that fits {MAX_LINES} lines of \
                     {MAX_LINE_CHARS} characters; shorten it",
                    i + 1
                )))
            }
        };
        cues.push(Cue {
            start_ms: cue.start_ms,
            end_ms: cue.end_ms,
            text,
        });
    }
    Ok(SubtitlesGenerated {
        lesson,
        language: language.to_owned(),
        cues,
        model: Some(model.to_owned()),
        usage: TokenUsage::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cue(text: &str) -> Cue {
        Cue {
            start_ms: 1_000,
            end_ms: 2_500,
            text: text.into(),
        }
    }

    #[test]
    fn a_translation_keeps_the_timings_and_refuses_what_does_not_fit() {
        let source = [cue("Hello there.")];
        let ok = accept(
            TranslationAnswer {
                cues: vec!["Bonjour à vous.".into()],
            },
            &source,
            1,
            "fr",
            "m",
        )
        .unwrap();
        assert_eq!(ok.cues[0].start_ms, 1_000);
        assert_eq!(ok.cues[0].end_ms, 2_500);
        assert_eq!(ok.cues[0].text, "Bonjour à vous.");
        let missing = TranslationAnswer { cues: vec![] };
        assert!(accept(missing, &source, 1, "fr", "m").is_err());
        let long = TranslationAnswer {
            cues: vec!["mot ".repeat(30)],
        };
        assert!(accept(long, &source, 1, "fr", "m")
            .unwrap_err()
            .0
            .contains("shorten"));
    }
}
