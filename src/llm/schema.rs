//! The JSON shapes the model must answer in, as JSON schemas in the three
//! forms servers take: OpenAI's "strict" form (every object closes with
//! `additionalProperties: false` and requires all its properties), a bounded
//! form shown in prompts, and a grammar form for servers that compile the
//! schema into a grammar (llama.cpp). Servers that enforce none of them are
//! still checked locally by [`super::validate`].

use serde_json::{json, Value};

use super::elements::{element_properties, grammar_elements};
use super::{translation, validate};

/// Name of the outline schema in `response_format`.
pub(crate) const OUTLINE_SCHEMA_NAME: &str = "course_outline";
/// Name of the lesson schema in `response_format`.
pub(crate) const LESSON_SCHEMA_NAME: &str = "course_lesson";

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

/// Schema of [`super::prompts::OutlineAnswer`]; bounded to exactly `lessons` lessons.
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
        },
        "tags": strings(),
        "difficulty": { "type": "string", "enum": ["beginner", "intermediate", "advanced"] },
        "learning_outcomes": strings()
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

/// Schema of [`super::prompts::LessonAnswer`] for lesson `number`; bounded to the quiz
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
                "url": { "type": ["string", "null"] },
                "quote": { "type": ["string", "null"] }
            }))
        },
        "elements": { "type": "array", "items": object(element_properties()) }
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
    let question = &mut grammar["properties"]["quiz"]["items"]["properties"];
    question["question"]["minLength"] = json!(1);
    question["options"]["items"]["minLength"] = json!(1);
    grammar["properties"]["quiz"]["items"]["properties"]["answer_index"] =
        json!({ "enum": [0, 1, 2, 3] });
    grammar["properties"]["elements"] = grammar_elements();
    Schema {
        name: LESSON_SCHEMA_NAME,
        strict,
        bounded,
        grammar,
    }
}

/// Schema of [`super::translation::TranslationAnswer`] for `cues` cues:
/// bounded (and in the grammar form fixed) to exactly that many texts.
pub(crate) fn translation_schema(cues: usize) -> Schema {
    let strict = translation::schema();
    let mut bounded = strict.clone();
    bound(&mut bounded, "/properties/cues", cues, cues);
    let mut grammar = bounded.clone();
    grammar["properties"]["cues"]["items"]["minLength"] = json!(1);
    Schema {
        name: translation::SCHEMA_NAME,
        strict,
        bounded,
        grammar,
    }
}

/// Schema of [`super::prompts::CheckAnswer`].
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
        for schema in [
            outline_schema(3),
            lesson_schema(2),
            translation_schema(2),
            check_schema(),
        ] {
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
        assert_eq!(question["options"]["items"]["minLength"], 1);
        let kinds: Vec<&Value> = lesson["properties"]["elements"]["items"]["anyOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| &k["properties"]["kind"]["const"])
            .collect();
        assert_eq!(kinds.len(), 6);
        assert!(kinds.contains(&&json!("exercise")));
    }

    /// Main's metadata and elements are asked for in every form.
    #[test]
    fn every_form_asks_for_metadata_and_elements() {
        let outline = outline_schema(2);
        let lesson = lesson_schema(1);
        for form in [&outline.strict, &outline.bounded, &outline.grammar] {
            for field in ["tags", "difficulty", "learning_outcomes"] {
                assert!(form["properties"][field].is_object(), "{field}");
                assert!(form["required"].as_array().unwrap().contains(&json!(field)));
            }
        }
        for form in [&lesson.strict, &lesson.bounded, &lesson.grammar] {
            assert!(form["properties"]["elements"].is_object());
            assert!(form["required"]
                .as_array()
                .unwrap()
                .contains(&json!("elements")));
        }
    }
}
