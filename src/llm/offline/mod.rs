//! The offline generator: deterministic courses from templates, with no
//! network and no key.
//!
//! It exists so that the service runs end to end on a bare machine (and in
//! tests and benchmarks) with output of the real shape and size: an outline
//! that follows a teaching arc from first ideas to a closing project, and
//! lessons of a few kilobytes of Markdown built from the topic, the lesson's
//! concepts and objectives, pitched at the grade level, each with a worked
//! example (with code when the topic is technical), an exercise and its
//! solution, a summary and a 3-5 question quiz. The same request always
//! yields the same course. Text is in English whatever the requested
//! language; the events say `model: "offline"`.
//!
//! - `templates`: the template data (teaching arc, titles, audiences).
//! - this module: the client and the outline; `lesson`: the lessons;
//!   `quiz`: their quizzes.

mod elements;
mod grounded;
mod lesson;
mod quiz;
mod templates;

use std::fmt::Write;
use std::time::Duration;

use async_trait::async_trait;

use super::{prompts, LlmClient, LlmError, SourceChunk};
use crate::domain::metadata::{self, Difficulty};
use crate::domain::subtitles::{wrap, Cue};
use crate::domain::SubtitlesGenerated;
use crate::domain::{CourseRequested, LessonGenerated, LessonPlan, OutlineGenerated, TokenUsage};
pub(crate) use lesson::lesson;
use templates::{Audience, Stage, CLOSING, COURSE_TITLES, MIDDLE, OPENING};

/// The model name the offline generator records.
pub(crate) const MODEL: &str = "offline";

/// [`LlmClient`] that writes templated courses locally.
#[derive(Debug, Clone, Default)]
pub struct OfflineClient {
    latency: Duration,
}

impl OfflineClient {
    /// A generator that waits `latency` per call, to stand in for a real
    /// model in benchmarks (zero: answer at once).
    pub fn new(latency: Duration) -> Self {
        Self { latency }
    }

    async fn simulate_latency(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[async_trait]
impl LlmClient for OfflineClient {
    fn model(&self) -> &str {
        MODEL
    }

    async fn outline_grounded(
        &self,
        course: &CourseRequested,
        _sources: &[SourceChunk],
    ) -> Result<OutlineGenerated, LlmError> {
        self.simulate_latency().await;
        Ok(outline(course))
    }

    async fn lesson_grounded(
        &self,
        course: &CourseRequested,
        outline: &OutlineGenerated,
        number: u32,
        sources: &[SourceChunk],
    ) -> Result<LessonGenerated, LlmError> {
        self.simulate_latency().await;
        let lesson = match sources {
            [] => lesson(course, outline, number),
            _ => grounded::lesson(course, outline, number, sources),
        };
        lesson.ok_or_else(|| LlmError::InvalidAnswer {
            attempts: 1,
            reason: format!("lesson {number} is not in the outline"),
        })
    }

    /// The offline generator cannot translate: it keeps the text and marks
    /// the first cue with the language (`[fr] ...`) where that still fits,
    /// so that the whole pipeline (steps, storage, formats) runs offline.
    async fn translate(
        &self,
        _course: &CourseRequested,
        lesson: u32,
        cues: &[Cue],
        language: &str,
    ) -> Result<SubtitlesGenerated, LlmError> {
        self.simulate_latency().await;
        let mut cues = cues.to_vec();
        if let Some(first) = cues.first_mut() {
            let marked = format!("[{language}] {}", first.text.replace('\n', " "));
            if let Some(text) = wrap(&marked) {
                first.text = text;
            }
        }
        let chars: usize = cues.iter().map(|c| c.text.len()).sum();
        Ok(SubtitlesGenerated {
            lesson,
            language: language.to_owned(),
            cues,
            model: Some(MODEL.to_owned()),
            usage: usage(chars, chars),
        })
    }
}

/// FNV-1a: a stable hash for picking template variants (std's hasher may
/// change between Rust releases, and output must not).
pub(super) fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(super) fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `template` with the topic in: `{T}` capitalized where it opens the
/// text, `{t}` (and `{T}` inside the text) as typed, except that a leading
/// article is lowercased there ("Understanding the water cycle", not
/// "Understanding The water cycle").
pub(super) fn fill(template: &str, topic: &str) -> String {
    let inside = article_lowered(topic);
    let filled = match template.strip_prefix("{T}") {
        Some(rest) => format!("{}{}", capitalize(topic), rest.replace("{T}", &inside)),
        None => template.replace("{T}", &inside),
    };
    filled.replace("{t}", &inside)
}

/// `topic` with a leading English article ("The", "A", "An") lowercased.
pub(super) fn article_lowered(topic: &str) -> String {
    for article in ["The ", "A ", "An "] {
        if let Some(rest) = topic.strip_prefix(article) {
            return format!("{}{rest}", article.to_lowercase());
        }
    }
    topic.to_owned()
}

/// The stages of an `n`-lesson course: an opening, the middle of the arc
/// (repeated as "part 2", ... for very long courses) and a closing project.
fn stages(n: usize) -> Vec<(&'static Stage, usize)> {
    match n {
        0 => vec![],
        1 => vec![(&OPENING, 1)],
        _ => {
            let mut all = vec![(&OPENING, 1)];
            all.extend((0..n - 2).map(|i| (&MIDDLE[i % MIDDLE.len()], i / MIDDLE.len() + 1)));
            all.push((&CLOSING, 1));
            all
        }
    }
}

/// The outline of a course: deterministic in the request.
pub fn outline(course: &CourseRequested) -> OutlineGenerated {
    let topic = course.topic.trim();
    let n = usize::from(course.num_lessons);
    let lessons: Vec<LessonPlan> = stages(n)
        .into_iter()
        .enumerate()
        .map(|(i, (stage, part))| {
            let mut title = fill(stage.title, topic);
            if part > 1 {
                let _ = write!(title, " (part {part})");
            }
            LessonPlan {
                number: i as u32 + 1,
                title,
                concepts: stage.concepts.iter().map(|c| fill(c, topic)).collect(),
                objectives: stage.objectives.iter().map(|o| fill(o, topic)).collect(),
            }
        })
        .collect();
    let title = fill(
        COURSE_TITLES[(stable_hash(topic) % COURSE_TITLES.len() as u64) as usize],
        topic,
    );
    let audience = Audience::describe(course);
    let topic = article_lowered(topic);
    let description = format!(
        "A {n}-lesson course on {topic} for {audience}. It starts with what {topic} is and \
         why it matters, then builds step by step towards using it with confidence{}. \
         Every lesson has a worked example, an exercise with its solution and a short quiz.",
        if n > 1 {
            ", ending with a project that brings the ideas together"
        } else {
            ""
        }
    );
    let prompt = prompts::outline(course, &[]);
    let completion_chars = title.len()
        + description.len()
        + lessons
            .iter()
            .map(|l| l.title.len() + l.concepts.concat().len() + l.objectives.concat().len() + 60)
            .sum::<usize>();
    let (tags, difficulty, learning_outcomes) = proposals(course, &lessons);
    OutlineGenerated {
        retrieved: Vec::new(),
        title,
        description,
        lessons,
        model: MODEL.to_owned(),
        usage: usage(prompt.system.len() + prompt.user.len(), completion_chars),
        tags,
        difficulty: Some(difficulty),
        learning_outcomes,
    }
}

/// The metadata an outline proposes: tags from the topic (the whole topic,
/// then its longer words), the difficulty the audience suggests, and the
/// first objective of each lesson as the course's outcomes.
fn proposals(
    course: &CourseRequested,
    lessons: &[LessonPlan],
) -> (Vec<String>, Difficulty, Vec<String>) {
    let topic = course.topic.trim();
    let words = topic
        .split(|c: char| !c.is_alphanumeric() && c != '+' && c != '#')
        .filter(|w| w.chars().count() > 3);
    let tags = metadata::proposed_tags(std::iter::once(topic).chain(words).take(6));
    let difficulty = match Audience::of(course) {
        Audience::Children | Audience::Teens => Difficulty::Beginner,
        Audience::Adults => Difficulty::Intermediate,
        Audience::Advanced => Difficulty::Advanced,
    };
    let outcomes: Vec<String> = lessons
        .iter()
        .filter_map(|l| l.objectives.first().cloned())
        .collect();
    (tags, difficulty, metadata::proposed_items(&outcomes))
}

/// Tokens as a real model would roughly count them (about 4 characters each).
/// The characters a model would have written for a lesson: its text, its
/// sections and its quiz, for [`usage`].
pub(super) fn completion_chars(
    content_md: &str,
    sections: &[crate::domain::LessonSection],
    quiz: &[crate::domain::QuizQuestion],
) -> usize {
    content_md.len()
        + sections
            .iter()
            .map(|s| s.heading.len() + s.body.len())
            .sum::<usize>()
        + quiz
            .iter()
            .map(|q| q.question.len() + q.options.concat().len() + q.explanation.len())
            .sum::<usize>()
}

pub(super) fn usage(prompt_chars: usize, completion_chars: usize) -> TokenUsage {
    let prompt_tokens = (prompt_chars / 4) as u64 + 8;
    let completion_tokens = (completion_chars / 4) as u64 + 1;
    TokenUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        estimated: false,
    }
}

#[cfg(test)]
mod fill_tests {
    use super::fill;

    #[test]
    fn a_topic_is_capitalized_where_it_opens_a_title_and_its_article_lowered_inside() {
        assert_eq!(
            fill("Understanding {T}", "The water cycle"),
            "Understanding the water cycle"
        );
        assert_eq!(
            fill("{T}, Step by Step", "the water cycle"),
            "The water cycle, Step by Step"
        );
        assert_eq!(
            fill("What is {T}? A first look", "An atom"),
            "What is an atom? A first look"
        );
        assert_eq!(
            fill("what {t} is, and {T}", "A Python program"),
            "what a Python program is, and a Python program"
        );
        // Only a leading article, and only a whole word.
        assert_eq!(fill("about {t}", "Theory of mind"), "about Theory of mind");
        assert_eq!(fill("about {t}", "Photosynthesis"), "about Photosynthesis");
    }

    #[test]
    fn the_description_and_the_lessons_lower_a_leading_article_inside_sentences() {
        let course = crate::domain::CourseRequested {
            topic: "The water cycle".into(),
            num_lessons: 2,
            language: "en".into(),
            ..Default::default()
        };
        let outline = super::outline(&course);
        assert!(
            outline
                .description
                .starts_with("A 2-lesson course on the water cycle for "),
            "{}",
            outline.description
        );
        let mut texts = vec![outline.description.clone()];
        for n in 1..=2 {
            texts.push(super::lesson(&course, &outline, n).unwrap().content_md);
        }
        for text in texts {
            // Only where a sentence or a heading opens may "The water cycle" stand.
            for (at, _) in text.match_indices("The water cycle") {
                let before = text[..at].trim_end_matches([' ', '*', '"', '#']);
                assert!(
                    before.is_empty() || before.ends_with(['.', '!', '?', ':', '\n']),
                    "mid-sentence capital at {at}: {:?}",
                    &text[at.saturating_sub(60)..(at + 20).min(text.len())]
                );
            }
        }
    }
}
