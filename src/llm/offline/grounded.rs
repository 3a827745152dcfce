//! The offline generator's lessons when chunks of the user's library were
//! retrieved: extractive, with no model at all. The real sentences of the
//! chunks are arranged under the lesson's concepts (each followed by the
//! id of its chunk, `[S1]`), the quiz asks cloze questions built from
//! them (a key term blanked, the other options terms of other sentences),
//! and the sources are the chunks used. The exercise and the other
//! interactive elements stay the templated ones.

use std::fmt::Write;

use super::{capitalize, completion_chars, stable_hash, usage};
use crate::domain::metadata::lesson_minutes;
use crate::domain::{
    CourseRequested, LessonGenerated, LessonSection, OutlineGenerated, QuizQuestion, SourceRef,
};
use crate::llm::{prompts, SourceChunk};

/// Sentences quoted under one concept, at most.
const PER_CONCEPT: usize = 3;
/// Sentences quoted in the whole lesson, at most.
const MAX_SENTENCES: usize = 16;

/// Words too common to be a concept's sign or a quiz's key term.
const STOPWORDS: &[&str] = &[
    "about",
    "above",
    "after",
    "again",
    "against",
    "along",
    "among",
    "another",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "cannot",
    "could",
    "does",
    "doing",
    "during",
    "each",
    "either",
    "every",
    "first",
    "from",
    "further",
    "have",
    "having",
    "here",
    "into",
    "itself",
    "just",
    "last",
    "less",
    "many",
    "more",
    "most",
    "much",
    "must",
    "never",
    "next",
    "often",
    "only",
    "other",
    "over",
    "same",
    "should",
    "since",
    "some",
    "such",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "under",
    "until",
    "upon",
    "very",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "with",
    "within",
    "without",
    "would",
    "your",
    "also",
    "called",
    "known",
    "used",
    "using",
    "makes",
    "made",
    "make",
    "takes",
    "into",
    "onto",
    "will",
    "were",
    "says",
    "like",
    "even",
    "still",
    "well",
    "however",
    "therefore",
    "thus",
    "which",
    "whose",
    "lesson",
    "course",
    "example",
    "section",
    "chapter",
    "page",
    "figure",
    "table",
];

/// A sentence of a chunk, with the chunk's index in the lesson's sources.
#[derive(Debug, Clone)]
struct Sentence {
    text: String,
    chunk: usize,
}

/// The readable text of a chunk: no Markdown heading lines, list markers or
/// quote marks, whitespace flattened.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, &line) in lines.iter().enumerate() {
        if line.starts_with('#') || line.starts_with("```") || line.starts_with('|') {
            continue;
        }
        // A title line of a text layer or plain text: short, unpunctuated,
        // capitalised, and followed by a capitalised line.
        let next = lines[i + 1..].iter().find(|l| !l.is_empty());
        let title = line.split_whitespace().count() <= 6
            && !line.ends_with(['.', '!', '?', ':', ';', ','])
            && line.chars().next().is_some_and(char::is_uppercase)
            && next.is_some_and(|n| n.chars().next().is_some_and(char::is_uppercase));
        if title {
            continue;
        }
        let line = line.trim_start_matches(['-', '*', '>', '+']).trim_start();
        if line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push(' ');
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The sentences of `text`: ending in `.`, `!` or `?` before a capital or
/// the end, of 4 to 60 words.
fn sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        current.push(c);
        let ends = matches!(c, '.' | '!' | '?')
            && match (chars.get(i + 1), chars.get(i + 2)) {
                (None, _) => true,
                (Some(w), Some(n)) if w.is_whitespace() => n.is_uppercase() || n.is_numeric(),
                _ => false,
            };
        if ends {
            let s = current.trim().to_owned();
            let words = s.split_whitespace().count();
            if (4..=60).contains(&words) {
                out.push(s);
            }
            current.clear();
        }
    }
    out
}

/// The lower-case words of `text`.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn is_content_word(w: &str) -> bool {
    w.chars().count() >= 4 && w.chars().all(char::is_alphabetic) && !STOPWORDS.contains(&w)
}

/// How strongly `sentence` is about `concept`: its words sharing a
/// five-letter stem with the concept's content words.
fn relevance(sentence: &str, concept: &str) -> usize {
    let stem = |w: &str| w.chars().take(5).collect::<String>();
    let stems: Vec<String> = words(concept)
        .into_iter()
        .filter(|w| is_content_word(w))
        .map(|w| stem(&w))
        .collect();
    words(sentence)
        .iter()
        .filter(|w| w.chars().count() >= 4 && stems.contains(&stem(w)))
        .count()
}

/// The words of `sentence` worth blanking, best first: content words of at
/// least five letters that it states once, preferring the lesson's own
/// terms, then names (capitalised inside the sentence), then the longest.
fn key_terms(sentence: &str, lesson_terms: &str) -> Vec<String> {
    let lesson = words(lesson_terms);
    let all = words(sentence);
    let mut ranked: Vec<(usize, &str)> = sentence
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .enumerate()
        .filter(|(_, w)| {
            let lower = w.to_lowercase();
            // Once only: a second occurrence would give the answer away.
            w.chars().count() >= 5
                && is_content_word(&lower)
                && all.iter().filter(|x| **x == lower).count() == 1
        })
        .collect();
    ranked.sort_by_key(|(i, w)| {
        let lower = w.to_lowercase();
        let in_lesson = lesson.contains(&lower);
        let name = *i > 0 && w.chars().next().is_some_and(char::is_uppercase);
        std::cmp::Reverse((in_lesson, name, w.chars().count(), std::cmp::Reverse(*i)))
    });
    ranked.into_iter().map(|(_, w)| w.to_owned()).collect()
}

/// The best of [`key_terms`].
#[cfg(test)]
fn key_term(sentence: &str, lesson_terms: &str) -> Option<String> {
    key_terms(sentence, lesson_terms).into_iter().next()
}

/// `sentence` with the first whole-word `term` replaced by a blank.
fn blank_out(sentence: &str, term: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = sentence[from..].find(term) {
        let start = from + at;
        let end = start + term.len();
        let before = sentence[..start].chars().next_back();
        let after = sentence[end..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if boundary(before) && boundary(after) {
            return Some(format!("{}_____{}", &sentence[..start], &sentence[end..]));
        }
        from = end;
    }
    None
}

/// Cloze questions from the quoted sentences: one per sentence that has a
/// key term and at least two other terms to offer beside it, taken from
/// the other sentences (other chunks' first).
fn cloze_quiz(
    quoted: &[Sentence],
    chunks: &[SourceChunk],
    lesson_terms: &str,
) -> Vec<QuizQuestion> {
    let terms: Vec<Vec<String>> = quoted
        .iter()
        .map(|s| key_terms(&s.text, lesson_terms))
        .collect();
    let mut quiz = Vec::new();
    let mut asked_terms: Vec<String> = Vec::new();
    for (i, s) in quoted.iter().enumerate() {
        let Some(term) = terms[i]
            .iter()
            .find(|t| !asked_terms.contains(&t.to_lowercase()))
        else {
            continue;
        };
        let lower = term.to_lowercase();
        let Some(blanked) = blank_out(&s.text, term) else {
            continue;
        };
        let sentence_words = words(&s.text);
        // Other sentences' best terms first, other chunks' before this one's.
        let mut others: Vec<(usize, bool, String)> = terms
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(j, ts)| {
                ts.iter()
                    .enumerate()
                    .map(move |(rank, t)| (rank, quoted[j].chunk == s.chunk, t.clone()))
            })
            .filter(|(_, _, t)| !sentence_words.contains(&t.to_lowercase()))
            .collect();
        others.sort_by_key(|(rank, same, _)| (*rank, *same));
        let others = others.into_iter().map(|(_, same, t)| (same, t));
        let mut options: Vec<String> = Vec::new();
        for (_, t) in others {
            let shaped = if term.chars().next().is_some_and(char::is_uppercase) {
                capitalize(&t)
            } else {
                t.to_lowercase()
            };
            if !options.iter().any(|o| o.eq_ignore_ascii_case(&shaped))
                && !shaped.eq_ignore_ascii_case(term)
            {
                options.push(shaped);
            }
            if options.len() == 3 {
                break;
            }
        }
        if options.len() < 2 {
            continue;
        }
        let answer = (stable_hash(&s.text) as usize).wrapping_add(quiz.len()) % (options.len() + 1);
        options.insert(answer, term.clone());
        let chunk = &chunks[s.chunk];
        quiz.push(QuizQuestion {
            question: format!(
                "According to *{}* [{}], which word completes the sentence? \"{blanked}\"",
                chunk.title, chunk.label
            ),
            options,
            answer_index: answer as u32,
            explanation: format!("The document says: \"{}\" [{}]", s.text, chunk.label),
        });
        asked_terms.push(lower);
        if quiz.len() == crate::llm::validate::MAX_QUIZ_QUESTIONS {
            break;
        }
    }
    quiz
}

/// Where a chunk sits in its document, for an attribution line.
fn place(chunk: &SourceChunk) -> String {
    match (chunk.page, &chunk.heading) {
        (Some(p), _) => format!(", page {p}"),
        (None, Some(h)) => format!(", \"{h}\""),
        _ => String::new(),
    }
}

/// Lesson `number` of `outline`, built from `chunks`; `None` when the
/// outline has no such lesson. Deterministic in its inputs.
pub fn lesson(
    course: &CourseRequested,
    outline: &OutlineGenerated,
    number: u32,
    chunks: &[SourceChunk],
) -> Option<LessonGenerated> {
    let template = super::lesson(course, outline, number)?;
    let plan = outline.lessons.iter().find(|l| l.number == number)?;
    let topic = super::article_lowered(course.topic.trim());
    let total = outline.lessons.len();

    let mut pool: Vec<(Sentence, bool)> = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        for text in sentences(&prose(&c.text)) {
            if !pool.iter().any(|(s, _)| s.text == text) {
                pool.push((Sentence { text, chunk: i }, false));
            }
        }
    }
    if pool.is_empty() {
        // Chunks without a full sentence (tables, lists of words): quote them whole.
        for (i, c) in chunks.iter().enumerate() {
            let text = prose(&c.text);
            if !text.is_empty() {
                pool.push((Sentence { text, chunk: i }, false));
            }
        }
    }

    let concepts: Vec<String> = if plan.concepts.is_empty() {
        vec![plan.title.clone()]
    } else {
        plan.concepts.clone()
    };
    // The best unused sentences for each concept, in the documents' order.
    let mut by_concept: Vec<Vec<Sentence>> = vec![Vec::new(); concepts.len()];
    let mut quoted = 0;
    for (ci, concept) in concepts.iter().enumerate() {
        let mut ranked: Vec<(usize, usize)> = pool
            .iter()
            .enumerate()
            .filter(|(_, (_, used))| !used)
            .map(|(i, (s, _))| (i, relevance(&s.text, concept)))
            .filter(|(_, r)| *r > 0)
            .collect();
        ranked.sort_by_key(|(i, r)| (std::cmp::Reverse(*r), *i));
        let mut picked: Vec<usize> = ranked
            .into_iter()
            .take(PER_CONCEPT)
            .map(|(i, _)| i)
            .collect();
        picked.sort_unstable();
        for i in picked {
            if quoted == MAX_SENTENCES {
                break;
            }
            pool[i].1 = true;
            by_concept[ci].push(pool[i].0.clone());
            quoted += 1;
        }
    }
    // Concepts the documents do not name get the passages left, in order.
    for section in by_concept.iter_mut().filter(|s| s.is_empty()) {
        for (s, used) in pool.iter_mut().filter(|(_, u)| !*u).take(2) {
            *used = true;
            section.push(s.clone());
        }
    }
    let rest: Vec<Sentence> = pool
        .iter()
        .filter(|(_, used)| !used)
        .map(|(s, _)| s.clone())
        .take(MAX_SENTENCES.saturating_sub(quoted).min(4))
        .collect();

    let mut used_chunks: Vec<usize> = Vec::new();
    let mut cite = |s: &Sentence| {
        if !used_chunks.contains(&s.chunk) {
            used_chunks.push(s.chunk);
        }
        format!("{} [{}]", s.text, chunks[s.chunk].label)
    };
    let mut sections = Vec::new();
    let mut intro = format!(
        "This lesson on {topic} is built from {} passage{} of your own documents. Every \
         statement below is quoted from them, followed by the id of its passage in \
         brackets; the sources at the end say where each one comes from.\n\nBy the end of \
         this lesson you will be able to:\n\n",
        chunks.len(),
        if chunks.len() == 1 { "" } else { "s" }
    );
    for o in &plan.objectives {
        let _ = writeln!(intro, "- {o}");
    }
    sections.push(LessonSection {
        heading: "Introduction".into(),
        body: intro.trim_end().to_owned(),
    });
    let mut summary = Vec::new();
    for (concept, quotes) in concepts.iter().zip(&by_concept) {
        if quotes.is_empty() {
            continue;
        }
        let body = quotes.iter().map(&mut cite).collect::<Vec<_>>().join(" ");
        let labels: Vec<String> = {
            let mut l: Vec<String> = Vec::new();
            for q in quotes {
                let label = format!("[{}]", chunks[q.chunk].label);
                if !l.contains(&label) {
                    l.push(label);
                }
            }
            l
        };
        summary.push(format!(
            "- **{}**: {} {}",
            capitalize(concept),
            quotes[0].text,
            labels.join(" ")
        ));
        sections.push(LessonSection {
            heading: capitalize(concept),
            body,
        });
    }
    if !rest.is_empty() {
        let body = rest.iter().map(&mut cite).collect::<Vec<_>>().join(" ");
        sections.push(LessonSection {
            heading: "More from your documents".into(),
            body,
        });
    }
    if !summary.is_empty() {
        sections.push(LessonSection {
            heading: "Summary".into(),
            body: summary.join("\n"),
        });
    }

    let mut content_md = format!(
        "# Lesson {number}: {}\n\n*{}, lesson {number} of {total}, built from your documents.*\n",
        plan.title, outline.title
    );
    for s in &sections {
        let _ = write!(content_md, "\n## {}\n\n{}\n", s.heading, s.body);
    }

    let all_quoted: Vec<Sentence> = by_concept.into_iter().flatten().chain(rest).collect();
    let lesson_terms = format!("{} {}", plan.title, concepts.join(" "));
    let mut quiz = cloze_quiz(&all_quoted, chunks, &lesson_terms);
    // Too few facts for three questions: the templated ones make up the rest.
    for q in template.quiz {
        if quiz.len() >= crate::llm::validate::MIN_QUIZ_QUESTIONS {
            break;
        }
        quiz.push(q);
    }

    let sources = used_chunks
        .iter()
        .map(|&i| SourceRef {
            title: format!(
                "[{}] {} ({}{})",
                chunks[i].label,
                chunks[i].title,
                chunks[i].path,
                place(&chunks[i])
            ),
            url: None,
            cited: None,
        })
        .collect();
    let prompt = prompts::lesson(course, outline, number, chunks);
    let completion_chars = completion_chars(&content_md, &sections, &quiz);
    let exercises = template
        .elements
        .iter()
        .filter(|e| e.body.is_exercise())
        .count();
    let questions = quiz.len()
        + template
            .elements
            .iter()
            .filter(|e| e.body.is_question())
            .count();
    Some(LessonGenerated {
        estimated_minutes: lesson_minutes(&content_md, questions, exercises),
        content_md,
        sections,
        quiz,
        sources,
        usage: usage(prompt.system.len() + prompt.user.len(), completion_chars),
        ..template
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::llm::offline::outline;
    use crate::llm::validate;

    fn chunk(label: &str, title: &str, text: &str) -> SourceChunk {
        SourceChunk {
            label: label.into(),
            chunk_id: Uuid::from_u128(1),
            source_id: Uuid::from_u128(2),
            version: 1,
            path: format!("bio/{title}.md"),
            title: title.into(),
            page: None,
            heading: Some("Intro".into()),
            text: text.into(),
            score_micros: 1,
        }
    }

    #[test]
    fn sentences_split_at_ends_before_capitals_and_skip_fragments() {
        assert_eq!(
            sentences(
                "Cells use e.g. glucose for energy. Short one. Mitochondria make ATP from sugar!"
            ),
            vec![
                "Cells use e.g. glucose for energy.",
                "Mitochondria make ATP from sugar!"
            ]
        );
        assert_eq!(
            prose("# Title\n\n- Ribosomes build proteins.\n> Quoted"),
            "Ribosomes build proteins. Quoted"
        );
        assert_eq!(
            prose("Cell Biology Notes\nThe mitochondrion makes ATP. It has\ntwo membranes."),
            "The mitochondrion makes ATP. It has two membranes."
        );
    }

    #[test]
    fn a_short_single_document_still_gets_cloze_questions() {
        let course = CourseRequested {
            topic: "Tides".into(),
            num_lessons: 1,
            language: "en".into(),
            ..Default::default()
        };
        let outline = outline(&course);
        let chunks = [chunk(
            "S1",
            "Tides",
            "Tides are caused mainly by the gravitational pull of the Moon. Spring tides \
             happen when the Sun and the Moon line up. Neap tides happen when they pull at \
             right angles.",
        )];
        let lesson = lesson(&course, &outline, 1, &chunks).unwrap();
        assert_eq!(validate::lesson(&outline, 1, &lesson), Ok(()));
        let cloze = lesson.quiz.iter().filter(|q| q.question.contains("_____"));
        assert!(cloze.count() >= 2, "{:#?}", lesson.quiz);
    }

    #[test]
    fn the_key_term_occurs_once_and_prefers_the_lesson_s_own_words() {
        let s = "The sodium-potassium pump moves two potassium ions and three sodium ions.";
        assert_eq!(key_term(s, "Transport").as_deref(), Some("moves"));
        assert_eq!(key_term(s, "Three ions").as_deref(), Some("three"));
        assert_eq!(
            blank_out("Ions cross; ions", "Ions").as_deref(),
            Some("_____ cross; ions")
        );
    }

    #[test]
    fn a_grounded_lesson_quotes_the_chunks_cites_them_and_asks_about_their_facts() {
        let course = CourseRequested {
            topic: "Cells".into(),
            num_lessons: 2,
            language: "en".into(),
            ..Default::default()
        };
        let outline = outline(&course);
        let chunks = [
            chunk(
                "S1",
                "Organelles",
                "# Organelles\n\nMitochondria produce energy for the cell. Ribosomes assemble \
                 proteins from amino acids. The nucleus stores the genetic material.",
            ),
            chunk(
                "S2",
                "Membranes",
                "The membrane controls what enters the cytoplasm. Channels allow specific \
                 molecules through the membrane.",
            ),
        ];
        let lesson = lesson(&course, &outline, 1, &chunks).unwrap();
        assert_eq!(validate::lesson(&outline, 1, &lesson), Ok(()));
        assert_eq!(validate::citations(&lesson, &chunks), Ok(()));
        assert!(lesson
            .content_md
            .contains("Ribosomes assemble proteins from amino acids. [S1]"));
        assert!(lesson.content_md.contains("[S2]"));
        assert!(!lesson.content_md.contains("# Organelles\n"));
        let cloze: Vec<_> = lesson
            .quiz
            .iter()
            .filter(|q| q.question.contains("_____"))
            .collect();
        assert!(cloze.len() >= 3, "{:#?}", lesson.quiz);
        for q in cloze {
            let answer = &q.options[q.answer_index as usize];
            let filled = q
                .question
                .split('"')
                .nth(1)
                .unwrap()
                .replace("_____", answer);
            assert!(
                chunks.iter().any(|c| c
                    .text
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .contains(&filled)),
                "{filled:?} is not a sentence of the documents"
            );
            assert!(q.options.len() >= 3);
        }
        assert_eq!(lesson.sources.len(), 2);
        assert_eq!(
            lesson,
            super::lesson(&course, &outline, 1, &chunks).unwrap(),
            "deterministic"
        );
    }
}
