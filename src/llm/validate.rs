//! Local checks of every answer, before it becomes an event.
//!
//! A model that ignores part of its instructions is common; a course with
//! three lessons when five were asked for, or a quiz whose answer points
//! past its options, must never reach the log. The messages are written to
//! the model: the OpenAI client sends them back in its re-ask.

use super::SourceChunk;
use crate::domain::{CourseRequested, LessonGenerated, OutlineGenerated};

/// Fewest quiz questions a lesson may have.
pub(crate) const MIN_QUIZ_QUESTIONS: usize = 3;
/// Most quiz questions a lesson may have.
pub(crate) const MAX_QUIZ_QUESTIONS: usize = 5;

/// What is wrong with an answer, phrased as an instruction the model can follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAnswer(pub String);

fn invalid(message: impl Into<String>) -> Result<(), InvalidAnswer> {
    Err(InvalidAnswer(message.into()))
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Checks an outline against its request: exactly `num_lessons` lessons
/// numbered 1..=N in order, and no empty title.
///
/// # Errors
/// The first problem found.
pub fn outline(course: &CourseRequested, outline: &OutlineGenerated) -> Result<(), InvalidAnswer> {
    let want = usize::from(course.num_lessons);
    if blank(&outline.title) {
        return invalid("the course title is empty");
    }
    if outline.lessons.len() != want {
        return invalid(format!(
            "the outline must have exactly {want} lessons, it has {}",
            outline.lessons.len()
        ));
    }
    for (i, lesson) in outline.lessons.iter().enumerate() {
        let expected = i as u32 + 1;
        if lesson.number != expected {
            return invalid(format!(
                "lessons must be numbered 1 to {want} in order: lesson {expected} has number {}",
                lesson.number
            ));
        }
        if blank(&lesson.title) {
            return invalid(format!("lesson {expected} has an empty title"));
        }
    }
    Ok(())
}

/// Checks lesson `number` of `outline`: the right number, a title, content,
/// and 3 to 5 quiz questions, each with at least two options and an
/// `answer_index` among them.
///
/// # Errors
/// The first problem found.
pub fn lesson(
    outline: &OutlineGenerated,
    number: u32,
    lesson: &LessonGenerated,
) -> Result<(), InvalidAnswer> {
    if !outline.lessons.iter().any(|l| l.number == number) {
        return invalid(format!("lesson {number} is not in the outline"));
    }
    if lesson.number != number {
        return invalid(format!(
            "this is lesson {number}, the answer has number {}",
            lesson.number
        ));
    }
    if blank(&lesson.title) {
        return invalid("the lesson title is empty");
    }
    if blank(&lesson.content_md) {
        return invalid("content_md is empty: it must hold the whole lesson in markdown");
    }
    let n = lesson.quiz.len();
    if !(MIN_QUIZ_QUESTIONS..=MAX_QUIZ_QUESTIONS).contains(&n) {
        return invalid(format!(
            "the quiz must have {MIN_QUIZ_QUESTIONS} to {MAX_QUIZ_QUESTIONS} questions, it has {n}"
        ));
    }
    crate::domain::elements::validate(&lesson.elements).map_err(InvalidAnswer)?;
    for (i, q) in lesson.quiz.iter().enumerate() {
        let i = i + 1;
        if blank(&q.question) {
            return invalid(format!("quiz question {i} is empty"));
        }
        if q.options.len() < 2 {
            return invalid(format!(
                "quiz question {i} must have at least 2 options, it has {}",
                q.options.len()
            ));
        }
        if q.options.iter().any(|o| blank(o)) {
            return invalid(format!("quiz question {i} has an empty option"));
        }
        if q.answer_index as usize >= q.options.len() {
            return invalid(format!(
                "quiz question {i} has answer_index {} but only {} options (indexes start at 0)",
                q.answer_index,
                q.options.len()
            ));
        }
    }
    Ok(())
}

/// The source ids a text cites inline, in order of first citation: `S3`
/// for `[S3]`, and each of a group such as `[S1, S2]` or `[S1; S4]`.
pub fn cited_labels(text: &str) -> Vec<String> {
    crate::domain::citations::labels(text)
}

/// Every text of a lesson a reader sees: its Markdown, its sections and its quiz.
pub(crate) fn lesson_texts(lesson: &LessonGenerated) -> Vec<&str> {
    let mut texts = vec![lesson.content_md.as_str()];
    for s in &lesson.sections {
        texts.push(&s.body);
    }
    for q in &lesson.quiz {
        texts.push(&q.question);
        texts.push(&q.explanation);
        texts.extend(q.options.iter().map(String::as_str));
    }
    texts
}

/// The labels a lesson cites anywhere in its texts, in order of first citation.
pub fn lesson_citations(lesson: &LessonGenerated) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for text in lesson_texts(lesson) {
        for label in cited_labels(text) {
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
    }
    labels
}

/// Checks a lesson's citations against the chunks it was given: every
/// `[Sn]` it cites must be one of them, and with sources it must cite at
/// least one. Without sources, any `[Sn]` is a citation of nothing.
///
/// # Errors
/// The first problem found, naming the ids that may be cited.
pub fn citations(lesson: &LessonGenerated, sources: &[SourceChunk]) -> Result<(), InvalidAnswer> {
    let cited = lesson_citations(lesson);
    let allowed = if sources.is_empty() {
        "none: no source passages were given, so cite no [S..] id".to_owned()
    } else {
        sources
            .iter()
            .map(|s| format!("[{}]", s.label))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown: Vec<String> = cited
        .iter()
        .filter(|l| !sources.iter().any(|s| &s.label == *l))
        .map(|l| format!("[{l}]"))
        .collect();
    if !unknown.is_empty() {
        return invalid(format!(
            "the lesson cites {}, which is not among the source passages given; the ids \
             you may cite are {allowed}",
            unknown.join(", ")
        ));
    }
    if !sources.is_empty() && cited.is_empty() {
        return invalid(format!(
            "the lesson cites none of the source passages: cite the ones it relies on \
             inline by id ({allowed}), right after the statements they support"
        ));
    }
    Ok(())
}

/// A phrase the model quotes from the passage it lists as `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub label: String,
    pub text: String,
}

/// The fewest words a quote must have to say which words of a passage
/// support the lesson.
pub const MIN_QUOTE_WORDS: usize = 3;

/// A text's words, lower-cased, each with the byte range it spans in the
/// text: what a quote is compared by (case, whitespace and punctuation
/// aside).
fn words(text: &str) -> Vec<(String, usize, usize)> {
    let mut out: Vec<(String, usize, usize)> = Vec::new();
    let mut current: Option<(String, usize, usize)> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            let w = current.get_or_insert_with(|| (String::new(), i, i));
            w.0.extend(c.to_lowercase());
            w.2 = i + c.len_utf8();
        } else if let Some(w) = current.take() {
            out.push(w);
        }
    }
    out.extend(current);
    out
}

/// Where `quote` occurs in `passage`, compared word by word without regard
/// to case, whitespace or punctuation: the passage's own text over that
/// span, so that what is recorded is the chunk's words, never the model's.
/// `None` when it does not occur or has no word.
pub fn quoted_passage<'a>(passage: &'a str, quote: &str) -> Option<&'a str> {
    let wanted: Vec<String> = words(quote).into_iter().map(|w| w.0).collect();
    if wanted.is_empty() {
        return None;
    }
    let have = words(passage);
    have.windows(wanted.len())
        .find(|run| run.iter().zip(&wanted).all(|(h, w)| &h.0 == w))
        .map(|run| &passage[run[0].1..run[run.len() - 1].2])
}

/// Checks each quote against the passage of the id it is listed under: the
/// id must be one given, and the quote (of at least [`MIN_QUOTE_WORDS`]
/// words) must occur in that passage. Gives the label and the passage's
/// own text of each quote, in order.
///
/// # Errors
/// The first quote that is not in its passage, naming it, so that the model
/// is asked again.
pub fn quotes(
    quotes: &[Quote],
    sources: &[SourceChunk],
) -> Result<Vec<(String, String)>, InvalidAnswer> {
    let mut out = Vec::new();
    for q in quotes {
        let Some(chunk) = sources.iter().find(|s| s.label == q.label) else {
            return Err(InvalidAnswer(format!(
                "sources lists [{}], which is not among the source passages given",
                q.label
            )));
        };
        let short: String = q.text.chars().take(120).collect();
        if words(&q.text).len() < MIN_QUOTE_WORDS {
            return Err(InvalidAnswer(format!(
                "the quote for [{}] ({short:?}) is too short: copy at least \
                 {MIN_QUOTE_WORDS} consecutive words of that passage, or give null",
                q.label
            )));
        }
        match quoted_passage(&chunk.text, &q.text) {
            Some(passage) => out.push((q.label.clone(), passage.to_owned())),
            None => {
                return Err(InvalidAnswer(format!(
                    "the quote for [{}] ({short:?}) is not in that passage: copy its \
                     words exactly from passage [{}], or give null",
                    q.label, q.label
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(label: &str) -> SourceChunk {
        SourceChunk {
            label: label.into(),
            chunk_id: uuid::Uuid::nil(),
            source_id: uuid::Uuid::nil(),
            version: 1,
            path: "a.md".into(),
            title: "A".into(),
            page: None,
            heading: None,
            text: "Text.".into(),
            score_micros: 1,
        }
    }

    #[test]
    fn a_quote_is_found_whatever_its_case_spacing_and_punctuation_and_never_across_words() {
        let passage = "The Calvin cycle fixes CO2 —\n  using RuBisCO, an enzyme. Plants grow.";
        assert_eq!(
            quoted_passage(passage, "calvin cycle fixes co2 using rubisco"),
            Some("Calvin cycle fixes CO2 —\n  using RuBisCO")
        );
        assert_eq!(
            quoted_passage(passage, "\"an enzyme plants\""),
            Some("an enzyme. Plants")
        );
        assert_eq!(quoted_passage(passage, "alvin cycle fixes"), None);
        assert_eq!(quoted_passage(passage, "fixes oxygen"), None);
        assert_eq!(quoted_passage(passage, " ... "), None);
        assert_eq!(
            quoted_passage("Über Zellen", "über zellen"),
            Some("Über Zellen")
        );
    }

    #[test]
    fn a_quote_not_in_its_passage_or_under_an_unknown_id_is_rejected() {
        let mut s1 = chunk("S1");
        s1.text = "Ribosomes translate messenger RNA into proteins.".into();
        let given = [s1, chunk("S2")];
        let q = |label: &str, text: &str| Quote {
            label: label.into(),
            text: text.into(),
        };
        assert_eq!(
            quotes(&[q("S1", "translate Messenger RNA")], &given),
            Ok(vec![(
                "S1".to_owned(),
                "translate messenger RNA".to_owned()
            )])
        );
        let err = quotes(&[q("S1", "ribosomes make lipids")], &given)
            .unwrap_err()
            .0;
        assert!(
            err.contains("[S1]") && err.contains("not in that passage"),
            "{err}"
        );
        let err = quotes(&[q("S2", "ribosomes translate messenger")], &given)
            .unwrap_err()
            .0;
        assert!(err.contains("not in that passage"), "{err}");
        let err = quotes(&[q("S7", "ribosomes translate messenger")], &given)
            .unwrap_err()
            .0;
        assert!(err.contains("[S7]"), "{err}");
        let err = quotes(&[q("S1", "Ribosomes")], &given).unwrap_err().0;
        assert!(err.contains("too short"), "{err}");
    }

    #[test]
    fn cited_labels_reads_single_and_grouped_ids_and_ignores_other_brackets() {
        assert_eq!(
            cited_labels("A [S1]. B [S2, S3]; [S1] again, [link](x), [Sx], [S], [x, S4]."),
            vec!["S1", "S2", "S3"]
        );
        assert_eq!(cited_labels("[[S5]] and [S6"), vec!["S5"]);
    }

    #[test]
    fn a_lesson_citing_an_id_not_given_or_none_at_all_is_rejected() {
        let mut lesson = LessonGenerated {
            content_md: "Cells divide [S1]. Proteins fold [S9].".into(),
            ..LessonGenerated::default()
        };
        let given = [chunk("S1"), chunk("S2")];
        let err = citations(&lesson, &given).unwrap_err().0;
        assert!(err.contains("[S9]") && err.contains("[S1], [S2]"), "{err}");
        lesson.content_md = "Cells divide.".into();
        assert!(citations(&lesson, &given).unwrap_err().0.contains("none"));
        lesson.content_md = "Cells divide [S2].".into();
        assert_eq!(citations(&lesson, &given), Ok(()));
        assert_eq!(citations(&LessonGenerated::default(), &[]), Ok(()));
        assert!(citations(&lesson, &[]).is_err());
    }
}
