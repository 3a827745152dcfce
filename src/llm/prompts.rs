//! What the model is asked, and the answers it gives: [`OutlineAnswer`] /
//! [`LessonAnswer`] deserialize the JSON that [`super::schema`] describes.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::elements::{into_elements, ElementAnswer};
use super::SourceChunk;
use crate::domain::metadata;
use crate::domain::Difficulty;
use crate::domain::{
    CourseRequested, LessonGenerated, LessonPlan, LessonSection, OutlineGenerated, QuizQuestion,
    SourceRef, TokenUsage,
};

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
    /// Proposals (a server without strict schemas may leave them out).
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub difficulty: Option<String>,
    #[serde(default)]
    pub learning_outcomes: Vec<String>,
}

impl OutlineAnswer {
    /// The event recording this answer.
    pub(crate) fn into_event(self, model: &str, usage: TokenUsage) -> OutlineGenerated {
        OutlineGenerated {
            retrieved: Vec::new(),
            title: self.title.trim().to_owned(),
            description: self.description.trim().to_owned(),
            lessons: self.lessons,
            model: model.to_owned(),
            usage,
            tags: metadata::proposed_tags(self.tags.iter().map(String::as_str)),
            // A difficulty outside the three is no reason to re-ask.
            difficulty: self.difficulty.and_then(|d| d.parse().ok()),
            learning_outcomes: metadata::proposed_items(&self.learning_outcomes),
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
    pub sources: Vec<SourceAnswer>,
    /// Absent from servers that ignore the schema: then none.
    #[serde(default)]
    pub elements: Vec<ElementAnswer>,
}

/// A source the model lists: with retrieved passages, titled `[S1] <title>`
/// and with a phrase quoted from that passage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceAnswer {
    pub title: String,
    #[serde(default)]
    pub url: Option<String>,
    /// Words copied from the cited passage (absent from servers that ignore
    /// the schema, and from ungrounded lessons).
    #[serde(default)]
    pub quote: Option<String>,
}

impl LessonAnswer {
    /// The phrases the model quotes, by the id its source's title starts with.
    pub(crate) fn quotes(&self) -> Vec<super::validate::Quote> {
        self.sources
            .iter()
            .filter_map(|s| {
                let quote = s
                    .quote
                    .as_deref()
                    .map(str::trim)
                    .filter(|q| !q.is_empty())?;
                let label = super::validate::cited_labels(s.title.trim_start())
                    .into_iter()
                    .next()
                    .filter(|_| s.title.trim_start().starts_with("[S"))?;
                Some(super::validate::Quote {
                    label,
                    text: quote.to_owned(),
                })
            })
            .collect()
    }

    /// The event recording this answer; `difficulty` is the course's, for
    /// exercises the model gave none.
    pub(crate) fn into_event(
        self,
        model: &str,
        usage: TokenUsage,
        difficulty: Difficulty,
    ) -> LessonGenerated {
        let elements = into_elements(self.elements, self.number, difficulty);
        let exercises = elements.iter().filter(|e| e.body.is_exercise()).count();
        let questions = self.quiz.len() + elements.iter().filter(|e| e.body.is_question()).count();
        let estimated_minutes = metadata::lesson_minutes(&self.content_md, questions, exercises);
        LessonGenerated {
            retrieved: Vec::new(),
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
                    cited: None,
                })
                .collect(),
            model: model.to_owned(),
            usage,
            estimated_minutes,
            elements,
        }
    }
}

/// The difficulty of a course as generation sees it: the request's, else
/// the outline's proposal, else intermediate.
pub(crate) fn course_difficulty(
    course: &CourseRequested,
    outline: &OutlineGenerated,
) -> Difficulty {
    course
        .metadata
        .difficulty
        .or(outline.difficulty)
        .unwrap_or(Difficulty::Intermediate)
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

/// Longest passage of a chunk shown to the model, in characters.
const PASSAGE_CHARS: usize = 2000;

/// The retrieved passages, each under its id, and how to cite them; `what`
/// is "lesson" or "course".
fn passages(sources: &[SourceChunk], what: &str, cite: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nSource passages from the learner's own documents, each under its id in brackets:"
    );
    for s in sources {
        let mut place = String::new();
        if let Some(page) = s.page {
            let _ = write!(place, ", page {page}");
        }
        if let Some(heading) = &s.heading {
            let _ = write!(place, ", section \"{heading}\"");
        }
        let text: String = s
            .text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(PASSAGE_CHARS)
            .collect();
        let _ = writeln!(
            out,
            "[{}] \"{}\" ({}{place}):\n    {text}",
            s.label, s.title, s.path
        );
    }
    let ids = sources
        .iter()
        .map(|s| format!("[{}]", s.label))
        .collect::<Vec<_>>()
        .join(", ");
    if cite {
        let _ = write!(
            out,
            "Base the {what} on these passages. Cite them inline by id, e.g. \"... fixes \
             carbon [S1].\", right after each statement they support; cite only the ids \
             {ids}, never another id, and invent no other source. List every id you cite \
             in sources, each as title \"[S1] <document title>\" with url null and as quote \
             a phrase of at least three words copied word for word from that passage, the \
             one that supports what you wrote (null if none does)."
        );
    } else {
        let _ = write!(
            out,
            "Base the {what} on these passages (ids {ids}); invent no other source."
        );
    }
    out
}

/// The prompt asking for a course outline, drawing on `sources` when some
/// were retrieved.
pub fn outline(course: &CourseRequested, sources: &[SourceChunk]) -> Prompt {
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
    if sources.is_empty() {
        let _ = writeln!(user, "{}", source_rule(course));
    } else {
        let _ = writeln!(user, "{}", passages(sources, "course", false));
    }
    let _ = write!(
        user,
        "\nReturn:\n\
         - title: a specific, inviting course title (not just the topic);\n\
         - description: 2-4 sentences on what the course covers, for whom, and what \
           learners will be able to do afterwards;\n\
         - lessons: exactly {n} lessons numbered 1 to {n} in order, each with a \
           concise title, 2-5 key concepts it introduces, and 2-4 learning objectives \
           phrased as observable outcomes (\"Explain ...\", \"Calculate ...\", \"Write ...\");\n\
         - tags: 3-8 short lower-case keywords a learner would search for (at most 40 \
           characters each);\n\
         - difficulty: beginner, intermediate or advanced, for this audience;\n\
         - learning_outcomes: 3-6 outcomes of the whole course, phrased like the objectives.\n\
         Pitch vocabulary, examples and depth at the audience. Do not repeat a lesson; \
         progress from foundations to application, and end with a lesson that \
         brings everything together."
    );
    Prompt { system, user }
}

/// The prompt asking for lesson `number` of `outline`, with the whole plan
/// so that the lesson connects to its neighbours. (A number missing from the
/// outline yields a prompt without a lesson plan; validation rejects the answer.)
///
/// With `sources`, the retrieved chunks are listed under their ids (`[S1]`,
/// ...) and the model is told to cite them inline and list them.
pub fn lesson(
    course: &CourseRequested,
    outline: &OutlineGenerated,
    number: u32,
    sources: &[SourceChunk],
) -> Prompt {
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
    if sources.is_empty() {
        let _ = writeln!(user, "{}", source_rule(course));
    } else {
        let _ = writeln!(user, "{}", passages(sources, "lesson", true));
    }
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
           (or null);\n\
         - elements: the lesson's interactive elements as structured data, each with a \
           unique id (e.g. \"l{number}-code-1\") and a kind: code_block (language, code, \
           caption, expected_output or null) for every code example of content_md; one \
           exercise (prompt, hints, solution, difficulty) for the lesson's exercise; and \
           2-4 extra questions of the kinds multiple_choice (options, answer_indexes: \
           every correct option), true_false (question is the statement, answer), \
           short_answer (accepted_answers) or single_choice (options, answer_indexes with \
           the one correct index), each with an explanation. Fill only the fields of the \
           element's kind; leave the others empty (\"\", [] or null)."
    );
    Prompt { system, user }
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
