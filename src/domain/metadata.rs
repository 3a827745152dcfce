//! Course metadata: who wrote a course, what it is tagged with, how hard it
//! is, what it needs and what it teaches, and how long it takes.
//!
//! Each field comes from one of three places, in this order of precedence:
//! an edit (`CourseMetadataChanged`), the request, the outline's proposal
//! (tags, difficulty, learning outcomes). The estimated duration is never
//! given: it is computed from the lessons' content ([`lesson_minutes`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::events::OutlineGenerated;
use super::request::{parse_language, reject_control, ValidationError};

/// Most tags a course may have.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters as sent (lower-casing may lengthen it).
pub const MAX_TAG_CHARS: usize = 40;
const MAX_AUTHOR_CHARS: usize = 100;
/// Most prerequisites or learning outcomes a course may list.
pub const MAX_LIST_ITEMS: usize = 20;
/// Longest prerequisite or learning outcome, in characters as sent.
pub const MAX_ITEM_CHARS: usize = 300;
/// Reading speed the duration estimate assumes, in words per minute.
pub const READING_WPM: usize = 200;
/// Minutes a quiz question takes.
pub const MINUTES_PER_QUESTION: u32 = 1;
/// Minutes an exercise takes.
pub const MINUTES_PER_EXERCISE: u32 = 10;

/// How demanding a course is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    Beginner,
    Intermediate,
    Advanced,
}

impl Difficulty {
    /// Every difficulty, easiest first.
    pub const ALL: [Self; 3] = [Self::Beginner, Self::Intermediate, Self::Advanced];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Beginner => "beginner",
            Self::Intermediate => "intermediate",
            Self::Advanced => "advanced",
        }
    }
}

impl std::fmt::Display for Difficulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`Difficulty`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("difficulty must be beginner, intermediate or advanced, got {0:?}")]
pub struct UnknownDifficulty(pub String);

impl std::str::FromStr for Difficulty {
    type Err = UnknownDifficulty;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownDifficulty(s.chars().take(40).collect()))
    }
}

/// The metadata a request (or, for some fields, an outline) gives a course.
/// Empty fields are not stored, so old payloads and new ones without
/// metadata have one shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CourseMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Normalised (see [`normalize_tag`]), distinct, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Difficulty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learning_outcomes: Vec<String>,
}

/// An edit of a course's metadata: the fields present are set, the others
/// left alone. Lists replace the old list whole and are never empty (an
/// empty list would let a later outline's proposal win over the edit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Difficulty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prerequisites: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_outcomes: Option<Vec<String>>,
}

impl CourseMetadata {
    /// Takes the outline's proposals for the fields still empty.
    pub fn fill_from_outline(&mut self, outline: &OutlineGenerated) {
        if self.tags.is_empty() {
            self.tags = outline.tags.clone();
        }
        if self.difficulty.is_none() {
            self.difficulty = outline.difficulty;
        }
        if self.learning_outcomes.is_empty() {
            self.learning_outcomes = outline.learning_outcomes.clone();
        }
    }

    /// Applies an edit (its language is not part of this struct).
    pub fn apply(&mut self, change: &MetadataChange) {
        if let Some(a) = &change.author {
            self.author = Some(a.clone());
        }
        if let Some(t) = &change.tags {
            self.tags = t.clone();
        }
        if let Some(d) = change.difficulty {
            self.difficulty = Some(d);
        }
        if let Some(p) = &change.prerequisites {
            self.prerequisites = p.clone();
        }
        if let Some(o) = &change.learning_outcomes {
            self.learning_outcomes = o.clone();
        }
    }
}

impl MetadataChange {
    /// Whether the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// An edit as `PATCH /courses/{id}` and `coursegen courses edit` send it,
/// before validation.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MetadataEdit)]
pub struct RawMetadataChange {
    /// At most 100 characters.
    #[schema(max_length = 100, nullable = false)]
    pub author: Option<String>,
    /// 1 to 20 tags of at most 40 characters; normalised (lower case,
    /// spaces become `-`).
    #[schema(min_items = 1, max_items = 20, nullable = false)]
    pub tags: Option<Vec<String>>,
    /// BCP-47 tag.
    #[schema(nullable = false)]
    pub language: Option<String>,
    /// beginner, intermediate or advanced.
    #[schema(nullable = false)]
    pub difficulty: Option<String>,
    /// 1 to 20 items of at most 300 characters.
    #[schema(min_items = 1, max_items = 20, nullable = false)]
    pub prerequisites: Option<Vec<String>>,
    /// 1 to 20 items of at most 300 characters.
    #[schema(min_items = 1, max_items = 20, nullable = false)]
    pub learning_outcomes: Option<Vec<String>>,
}

impl MetadataChange {
    /// Validates an edit.
    ///
    /// # Errors
    /// The first rule it breaks; [`ValidationError::NothingToChange`] for an
    /// edit naming no field.
    pub fn parse(raw: RawMetadataChange) -> Result<Self, ValidationError> {
        let non_empty = |field: &'static str, list: Vec<String>| {
            if list.iter().all(|s| s.trim().is_empty()) {
                Err(ValidationError::EmptyList { field })
            } else {
                Ok(list)
            }
        };
        let change = Self {
            author: match raw.author {
                None => None,
                Some(a) => Some(
                    parse_author(Some(a))?.ok_or(ValidationError::Missing { field: "author" })?,
                ),
            },
            tags: raw
                .tags
                .map(|t| non_empty("tags", t).and_then(parse_tags))
                .transpose()?,
            language: raw
                .language
                .map(|l| reject_control("language", &l).and_then(|()| parse_language(l.trim())))
                .transpose()?,
            difficulty: raw.difficulty.map(|d| parse_difficulty(&d)).transpose()?,
            prerequisites: raw
                .prerequisites
                .map(|p| non_empty("prerequisites", p).and_then(|p| parse_list("prerequisites", p)))
                .transpose()?,
            learning_outcomes: raw
                .learning_outcomes
                .map(|o| {
                    non_empty("learning_outcomes", o)
                        .and_then(|o| parse_list("learning_outcomes", o))
                })
                .transpose()?,
        };
        if change.is_empty() {
            return Err(ValidationError::NothingToChange);
        }
        Ok(change)
    }
}

/// A tag in its canonical form: trimmed, lower case, runs of white space and
/// underscores as one `-`, a leading `#` dropped. `None` when nothing is left.
pub fn normalize_tag(tag: &str) -> Option<String> {
    let lower = tag.trim().trim_start_matches('#').to_lowercase();
    let joined = lower
        .split(|c: char| c.is_whitespace() || c == '_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    (!joined.is_empty()).then_some(joined)
}

/// Tags a user gave: normalised, repeats dropped, at most [`MAX_TAGS`] of at
/// most [`MAX_TAG_CHARS`] characters.
///
/// # Errors
/// Too many or too long tags, control characters.
pub fn parse_tags(tags: Vec<String>) -> Result<Vec<String>, ValidationError> {
    // The list as sent is bounded (as the API documents it), repeats included.
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::TooManyTags(tags.len()));
    }
    let mut out: Vec<String> = Vec::new();
    for tag in &tags {
        reject_control("tags", tag)?;
        // The bound is on the tag as sent: lower-casing may lengthen it.
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(ValidationError::TagLength(tag.chars().take(50).collect()));
        }
        let Some(tag) = normalize_tag(tag) else {
            continue;
        };
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(ValidationError::TooManyTags(out.len()));
    }
    Ok(out)
}

/// Tags a model proposed: normalised like a user's, but what breaks the
/// rules is dropped instead of refused (the model's answer is still good).
pub fn proposed_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        if tag.chars().any(char::is_control) {
            continue;
        }
        if let Some(tag) = normalize_tag(tag) {
            if tag.chars().count() <= MAX_TAG_CHARS && !out.contains(&tag) && out.len() < MAX_TAGS {
                out.push(tag);
            }
        }
    }
    out
}

/// Items a model proposed (learning outcomes): trimmed, blank, over-long and
/// control-character items dropped, at most [`MAX_LIST_ITEMS`].
pub fn proposed_items(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.trim())
        .filter(|i| {
            !i.is_empty() && i.chars().count() <= MAX_ITEM_CHARS && !i.chars().any(char::is_control)
        })
        .take(MAX_LIST_ITEMS)
        .map(str::to_owned)
        .collect()
}

pub(super) fn parse_author(author: Option<String>) -> Result<Option<String>, ValidationError> {
    if let Some(a) = &author {
        reject_control("author", a)?;
        let n = a.chars().count();
        if n > MAX_AUTHOR_CHARS {
            return Err(ValidationError::AuthorLength(n));
        }
    }
    let Some(author) = author
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
    else {
        return Ok(None);
    };
    Ok(Some(author))
}

pub(super) fn parse_difficulty(d: &str) -> Result<Difficulty, ValidationError> {
    reject_control("difficulty", d)?;
    d.parse()
        .map_err(|e: UnknownDifficulty| ValidationError::Difficulty(e.0))
}

/// Prerequisites or learning outcomes a user gave: trimmed, blanks dropped.
pub(super) fn parse_list(
    field: &'static str,
    items: Vec<String>,
) -> Result<Vec<String>, ValidationError> {
    if items.len() > MAX_LIST_ITEMS {
        return Err(ValidationError::ListLength {
            field,
            got: items.len(),
        });
    }
    for item in &items {
        reject_control(field, item)?;
        if item.chars().count() > MAX_ITEM_CHARS {
            return Err(ValidationError::ItemLength { field });
        }
    }
    let items: Vec<String> = items
        .into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect();
    if items.len() > MAX_LIST_ITEMS {
        return Err(ValidationError::ListLength {
            field,
            got: items.len(),
        });
    }
    Ok(items)
}

/// A BCP-47 tag in canonical form (`pt-br` becomes `pt-BR`), as list
/// filters compare languages.
///
/// # Errors
/// Not a valid tag.
pub fn parse_language_tag(tag: &str) -> Result<String, ValidationError> {
    parse_language(tag)
}

/// Words of a text, as the reading-time estimate counts them.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// How long a lesson takes: reading its markdown at [`READING_WPM`] (rounded
/// up), plus [`MINUTES_PER_QUESTION`] per quiz question and
/// [`MINUTES_PER_EXERCISE`] per exercise.
pub fn lesson_minutes(content_md: &str, quiz_questions: usize, exercises: usize) -> u32 {
    let reading = word_count(content_md).div_ceil(READING_WPM) as u32;
    reading + MINUTES_PER_QUESTION * quiz_questions as u32 + MINUTES_PER_EXERCISE * exercises as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised_deduplicated_and_bounded() {
        let tags = parse_tags(vec![
            " Machine  Learning ".into(),
            "#rust".into(),
            "machine_learning".into(),
            "  ".into(),
        ])
        .unwrap();
        assert_eq!(tags, vec!["machine-learning", "rust"]);
        assert_eq!(
            parse_tags((0..21).map(|i| format!("t{i}")).collect()),
            Err(ValidationError::TooManyTags(21))
        );
        assert!(parse_tags((0..20).map(|i| format!("t{i}")).collect()).is_ok());
        assert!(parse_tags(vec!["x".repeat(40)]).is_ok());
        assert!(matches!(
            parse_tags(vec!["x".repeat(41)]),
            Err(ValidationError::TagLength(_))
        ));
        assert_eq!(
            parse_tags(vec!["a\u{0}b".into()]),
            Err(ValidationError::ControlCharacters { field: "tags" })
        );
    }

    #[test]
    fn proposed_tags_drop_what_breaks_the_rules() {
        let long = "y".repeat(41);
        let many: Vec<String> = (0..30).map(|i| format!("T {i}")).collect();
        let mut input: Vec<&str> = vec!["Biology", &long, "biology", "bad\u{7}"];
        input.extend(many.iter().map(String::as_str));
        let tags = proposed_tags(input);
        assert_eq!(tags.len(), MAX_TAGS);
        assert_eq!(tags[0], "biology");
        assert_eq!(tags[1], "t-0");
    }

    #[test]
    fn a_lesson_takes_its_reading_time_plus_its_exercises() {
        assert_eq!(lesson_minutes("", 0, 0), 0);
        assert_eq!(lesson_minutes("one", 0, 0), 1);
        let words = "word ".repeat(401);
        assert_eq!(lesson_minutes(&words, 0, 0), 3);
        assert_eq!(lesson_minutes(&words, 4, 2), 3 + 4 + 20);
    }

    #[test]
    fn an_edit_names_at_least_one_field_and_no_empty_list() {
        assert_eq!(
            MetadataChange::parse(RawMetadataChange::default()),
            Err(ValidationError::NothingToChange)
        );
        assert_eq!(
            MetadataChange::parse(RawMetadataChange {
                tags: Some(vec![" ".into()]),
                ..Default::default()
            }),
            Err(ValidationError::EmptyList { field: "tags" })
        );
        let change = MetadataChange::parse(RawMetadataChange {
            tags: Some(vec!["Cell Biology".into()]),
            language: Some("pt-br".into()),
            difficulty: Some("Advanced".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(change.tags, Some(vec!["cell-biology".to_owned()]));
        assert_eq!(change.language.as_deref(), Some("pt-BR"));
        assert_eq!(change.difficulty, Some(Difficulty::Advanced));
        assert!(MetadataChange::parse(RawMetadataChange {
            difficulty: Some("easy".into()),
            ..Default::default()
        })
        .is_err());
    }
}
