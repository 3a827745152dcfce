//! What the model is asked, and the JSON shapes it must answer in.
//!
//! The schemas are "strict" structured-output schemas (every object closes
//! with `additionalProperties: false` and requires all its properties), so
//! servers that enforce them return JSON that deserializes into
//! [`OutlineAnswer`] / [`LessonAnswer`]; servers that do not are still
//! checked locally by [`super::validate`]. Servers that take a schema only
//! as a grammar (llama.cpp) get [`Schema::bounded`], which also bounds the
//! arrays, so that even a small model cannot plan the wrong lesson count.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::validate;
use crate::domain::{
    CourseRequested, LessonGenerated, LessonPlan, LessonSection, OutlineGenerated, QuizQuestion,
    SourceRef, TokenUsage,
};

/// Name of the outline schema in `response_format`.
pub(crate) const OUTLINE_SCHEMA_NAME: &str = "course_outline";
/// Name of the lesson schema in `response_format`.
pub(crate) const LESSON_SCHEMA_NAME: &str = "course_lesson";

/// A system and a user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prompt {
    pub system: String,
    pub user: String,
}

/// The model's outline, as the outline schema shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutlineAnswer {
    pub title: String,
    pub description: String,
    pub lessons: Vec<LessonPlan>,
}

impl OutlineAnswer {
    /// The event recording this answer.
    pub(crate) fn into_event(self, model: &str, usage: TokenUsage) -> OutlineGenerated {
        OutlineGenerated {
            title: self.title.trim().to_owned(),
            description: self.description.trim().to_owned(),
            lessons: self.lessons,
            model: model.to_owned(),
            usage,
        }
    }
}

/// The model's lesson, as the lesson schema shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LessonAnswer {
    pub number: u32,
    pub title: String,
    pub content_md: String,
    pub sections: Vec<LessonSection>,
    pub quiz: Vec<QuizQuestion>,
    pub sources: Vec<SourceRef>,
}

impl LessonAnswer {
    /// The event recording this answer.
    pub(crate) fn into_event(self, model: &str, usage: TokenUsage) -> LessonGenerated {
        LessonGenerated {
            number: self.number,
            title: self.title.trim().to_owned(),
            content_md: self.content_md,
            sections: self.sections,
            quiz: self.quiz,
            sources: self
                .sources
                .into_iter()
                .map(|s| SourceRef {
                    title: s.title,
                    url: s.url.filter(|u| !u.trim().is_empty()),
                })
                .collect(),
            model: model.to_owned(),
            usage,
        }
    }
}

fn audience(course: &CourseRequested) -> String {
    match &course.grade_level {
        Some(grade) => format!("learners at the level \"{grade}\""),
        None => "a general adult audience with no prior knowledge of the subject".to_owned(),
    }
}

fn language_rule(course: &CourseRequested) -> String {
    format!(
        "Write every human-readable text (titles, prose, quiz, explanations) in the language \
         with BCP-47 tag \"{}\". Keep JSON keys in English.",
        course.language
    )
}

fn source_rule(course: &CourseRequested) -> String {
    match &course.source_filter {
        Some(filter) => format!(
            "Draw only on sources from the collection \"{filter}\"; \
             cite nothing outside it."
        ),
        None => "Cite well-known, reputable sources (textbooks, standards, \
                 official documentation, encyclopedias). Never invent URLs: \
                 use null when unsure of one."
            .to_owned(),
    }
}

/// The prompt asking for a course outline.
pub fn outline(course: &CourseRequested) -> Prompt {
    let n = course.num_lessons;
    let system = format!(
        "You are an experienced instructional designer. You plan online courses that \
         build understanding step by step: each lesson rests on the ones before it, \
         starts from what the learner already knows and ends with something they can do. \
         You answer with JSON only, matching the given schema.\n{}",
        language_rule(course)
    );
    let mut user = String::new();
    let _ = writeln!(user, "Plan a course on: {}", course.topic);
    let _ = writeln!(user, "Audience: {}.", audience(course));
    let _ = writeln!(user, "Number of lessons: exactly {n}.");
    let _ = writeln!(user, "{}", source_rule(course));
    let _ = write!(
        user,
        "\nReturn:\n\
         - title: a specific, inviting course title (not just the topic);\n\
         - description: 2-4 sentences on what the course covers, for whom, and what \
           learners will be able to do afterwards;\n\
         - lessons: exactly {n} lessons numbered 1 to {n} in order, each with a \
           concise title, 2-5 key concepts it introduces, and 2-4 learning objectives \
           phrased as observable outcomes (\"Explain ...\", \"Calculate ...\", \"Write ...\").\n\
         Pitch vocabulary, examples and depth at the audience. Do not repeat a lesson; \
         progress from foundations to application, and end with a lesson that \
         brings everything together."
    );
    Prompt { system, user }
}

/// The prompt asking for lesson `number` of `outline`, with the whole plan
/// so that the lesson connects to its neighbours. (A number missing from the
/// outline yields a prompt without a lesson plan; validation rejects the answer.)
pub fn lesson(course: &CourseRequested, outline: &OutlineGenerated, number: u32) -> Prompt {
    let system = format!(
        "You are an expert teacher writing one lesson of an online course. You explain \
         clearly, show before you tell, check understanding, and are accurate: when \
         something is uncertain or debated, you say so. You answer with JSON only, \
         matching the given schema.\n{}",
        language_rule(course)
    );
    let plan = outline.lessons.iter().find(|l| l.number == number);
    let mut user = String::new();
    let _ = writeln!(user, "Course: {}", outline.title);
    let _ = writeln!(user, "About the course: {}", outline.description);
    let _ = writeln!(user, "Topic: {}", course.topic);
    let _ = writeln!(user, "Audience: {}.", audience(course));
    let _ = writeln!(user, "\nThe course plan:");
    for l in &outline.lessons {
        let marker = if l.number == number {
            "  <- this lesson"
        } else {
            ""
        };
        let _ = writeln!(user, "{}. {}{marker}", l.number, l.title);
    }
    let _ = writeln!(user, "\nWrite lesson {number}.");
    if let Some(plan) = plan {
        let _ = writeln!(user, "Title: {}", plan.title);
        if !plan.concepts.is_empty() {
            let _ = writeln!(user, "Key concepts: {}", plan.concepts.join("; "));
        }
        if !plan.objectives.is_empty() {
            let _ = writeln!(user, "Learning objectives:");
            for o in &plan.objectives {
                let _ = writeln!(user, "- {o}");
            }
        }
    }
    let _ = writeln!(user, "{}", source_rule(course));
    let _ = write!(
        user,
        "\nReturn:\n\
         - number: {number};\n\
         - title: the lesson title;\n\
         - content_md: the whole lesson in Markdown (about 800-1500 words): an \
           introduction that connects to earlier lessons, one `##` section per key \
           concept, a worked example solved step by step, fenced code blocks with a \
           language tag whenever the topic is technical, an exercise followed by its \
           solution, and a short summary;\n\
         - sections: the `##` sections of content_md as heading and body (body in Markdown);\n\
         - quiz: 3 to 5 multiple-choice questions testing the objectives, each with \
           2-5 plausible options, answer_index (0-based index of the single correct \
           option) and an explanation of why it is right;\n\
         - sources: the references the lesson relies on, each with a title and a url \
           (or null)."
    );
    Prompt { system, user }
}

/// The JSON shape of one step's answer, in the two forms servers take.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schema {
    /// Its name in `response_format`.
    pub name: &'static str,
    /// OpenAI's strict form (no array bounds, which strict mode refuses).
    pub strict: Value,
    /// The same with `minItems`/`maxItems`, shown in prompts.
    pub bounded: Value,
    /// Tighter still, for servers that turn the schema into a grammar
    /// (llama.cpp, llama-cpp-python), so that even a small model cannot
    /// misnumber lessons or point a quiz answer past its options.
    pub grammar: Value,
}

fn object(properties: Value) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .expect("properties are an object")
        .keys()
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

/// Adds `minItems`/`maxItems` to the array at `pointer`.
fn bound(schema: &mut Value, pointer: &str, min: usize, max: usize) {
    let array = schema
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .expect("the pointer names an array schema");
    array.insert("minItems".into(), json!(min));
    array.insert("maxItems".into(), json!(max));
}

/// Schema of [`OutlineAnswer`]; bounded to exactly `lessons` lessons.
pub(crate) fn outline_schema(lessons: u8) -> Schema {
    let strict = object(json!({
        "title": { "type": "string" },
        "description": { "type": "string" },
        "lessons": {
            "type": "array",
            "items": object(json!({
                "number": { "type": "integer" },
                "title": { "type": "string" },
                "concepts": strings(),
                "objectives": strings()
            }))
        }
    }));
    let mut bounded = strict.clone();
    let n = usize::from(lessons);
    bound(&mut bounded, "/properties/lessons", n, n);
    // One item schema per lesson, its number a constant (`prefixItems`
    // without `items`, which both llama.cpp grammar converters read as a tuple).
    let mut grammar = strict.clone();
    let item = grammar["properties"]["lessons"]["items"].clone();
    let tuple: Vec<Value> = (1..=u32::from(lessons))
        .map(|number| {
            let mut item = item.clone();
            item["properties"]["number"] = json!({ "const": number });
            item["properties"]["title"]["minLength"] = json!(1);
            item
        })
        .collect();
    grammar["properties"]["lessons"] = json!({ "type": "array", "prefixItems": tuple });
    grammar["properties"]["title"]["minLength"] = json!(1);
    Schema {
        name: OUTLINE_SCHEMA_NAME,
        strict,
        bounded,
        grammar,
    }
}

/// Schema of [`LessonAnswer`] for lesson `number`; bounded to the quiz
/// sizes validation takes.
pub(crate) fn lesson_schema(number: u32) -> Schema {
    let strict = object(json!({
        "number": { "type": "integer" },
        "title": { "type": "string" },
        "content_md": { "type": "string" },
        "sections": {
            "type": "array",
            "items": object(json!({
                "heading": { "type": "string" },
                "body": { "type": "string" }
            }))
        },
        "quiz": {
            "type": "array",
            "items": object(json!({
                "question": { "type": "string" },
                "options": strings(),
                "answer_index": { "type": "integer" },
                "explanation": { "type": "string" }
            }))
        },
        "sources": {
            "type": "array",
            "items": object(json!({
                "title": { "type": "string" },
                "url": { "type": ["string", "null"] }
            }))
        }
    }));
    let mut bounded = strict.clone();
    bound(
        &mut bounded,
        "/properties/quiz",
        validate::MIN_QUIZ_QUESTIONS,
        validate::MAX_QUIZ_QUESTIONS,
    );
    bound(
        &mut bounded,
        "/properties/quiz/items/properties/options",
        2,
        5,
    );
    // Four options and an index among them: the grammar cannot relate
    // answer_index to the options' count, so the count is fixed.
    let mut grammar = bounded.clone();
    grammar["properties"]["number"] = json!({ "const": number });
    for field in ["title", "content_md"] {
        grammar["properties"][field]["minLength"] = json!(1);
    }
    bound(
        &mut grammar,
        "/properties/quiz/items/properties/options",
        4,
        4,
    );
    grammar["properties"]["quiz"]["items"]["properties"]["answer_index"] =
        json!({ "enum": [0, 1, 2, 3] });
    Schema {
        name: LESSON_SCHEMA_NAME,
        strict,
        bounded,
        grammar,
    }
}

/// The answer to [`check`].
#[derive(Debug, Deserialize)]
pub(crate) struct CheckAnswer {
    pub answer: String,
}

/// The tiny question of `coursegen llm check`.
pub(crate) fn check() -> Prompt {
    Prompt {
        system: "You answer with JSON only, matching the given schema.".into(),
        user: "Reply with the JSON object {\"answer\": \"ok\"}.".into(),
    }
}

/// Schema of [`CheckAnswer`].
pub(crate) fn check_schema() -> Schema {
    let strict = object(json!({ "answer": { "type": "string" } }));
    Schema {
        name: "check",
        bounded: strict.clone(),
        grammar: strict.clone(),
        strict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every object of a strict schema closes and requires all its properties.
    fn assert_strict(schema: &Value) {
        match schema {
            Value::Object(map) => {
                if map.get("type") == Some(&json!("object")) {
                    assert_eq!(map["additionalProperties"], json!(false));
                    let props: Vec<&String> =
                        map["properties"].as_object().unwrap().keys().collect();
                    let required: Vec<&str> = map["required"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect();
                    assert_eq!(props.len(), required.len());
                    assert!(props.iter().all(|p| required.contains(&p.as_str())));
                }
                map.values().for_each(assert_strict);
            }
            Value::Array(items) => items.iter().for_each(assert_strict),
            _ => {}
        }
    }

    #[test]
    fn schemas_are_strict() {
        for schema in [outline_schema(3), lesson_schema(2), check_schema()] {
            assert_strict(&schema.strict);
            assert_strict(&schema.bounded);
            assert_strict(&schema.grammar);
            assert!(!schema.strict.to_string().contains("minItems"));
        }
    }

    #[test]
    fn bounded_schemas_bound_lessons_and_quiz() {
        let outline = outline_schema(3).bounded;
        assert_eq!(outline["properties"]["lessons"]["minItems"], 3);
        assert_eq!(outline["properties"]["lessons"]["maxItems"], 3);
        let lesson = lesson_schema(2).bounded;
        assert_eq!(lesson["properties"]["quiz"]["minItems"], 3);
        assert_eq!(lesson["properties"]["quiz"]["maxItems"], 5);
    }

    #[test]
    fn grammar_schemas_fix_the_numbers_and_the_answer_range() {
        let outline = outline_schema(3).grammar;
        let tuple = outline["properties"]["lessons"]["prefixItems"]
            .as_array()
            .unwrap();
        let numbers: Vec<&Value> = tuple
            .iter()
            .map(|l| &l["properties"]["number"]["const"])
            .collect();
        assert_eq!(numbers, [&json!(1), &json!(2), &json!(3)]);
        let lesson = lesson_schema(2).grammar;
        assert_eq!(lesson["properties"]["number"]["const"], 2);
        let question = &lesson["properties"]["quiz"]["items"]["properties"];
        assert_eq!(question["options"]["maxItems"], 4);
        assert_eq!(question["answer_index"]["enum"], json!([0, 1, 2, 3]));
    }
}
