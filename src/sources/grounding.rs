//! Grounding generation in the user's library: what a step retrieves
//! (limited to the user and the request's `source_filter`), how it is
//! recorded in the step's event, and the lesson's citations `[S1]`, `[S2]`,
//! ... built from the retrieved chunks, never from the model's say-so.

use deadpool_postgres::Pool;

use crate::domain::{
    CourseRequested, LessonGenerated, LessonPlan, LessonSection, Retrieved, SourceRef,
};
use crate::llm::{validate, SourceChunk};
use crate::projections::sources::queries::{self, SearchHit};
use crate::sources::embeddings::Embedder;
use crate::sources::semantic::{self, SemanticError};

/// Chunks retrieved for the outline.
pub const OUTLINE_K: i64 = 6;
/// Chunks retrieved for each lesson.
pub const LESSON_K: i64 = 4;

/// What retrieval found for a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Retrieval {
    /// The request names no `source_filter` and the user's library is empty:
    /// the course is generated without sources.
    NoLibrary,
    /// The request's `source_filter` matches no document: the step fails.
    NoDocuments { prefix: String },
    /// The best chunks (possibly none, when nothing matches the words).
    Hits(Vec<SearchHit>),
}

/// A full-text query from free text: its distinct words of three letters or
/// more, any of which may match (`or`), so that a lesson's title, concepts
/// and objectives rank chunks rather than demand every word at once.
pub fn any_word_query(text: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        let w = w.to_lowercase();
        if w.chars().count() >= 3 && !words.contains(&w) && w != "or" {
            words.push(w);
        }
        if words.len() == 40 {
            break;
        }
    }
    words.join(" or ")
}

/// Retrieves the `k` best chunks for `text` from the requesting user's
/// library, under the request's `source_filter` when it has one: by full
/// text, fused with the nearest vectors when an `embedder` is configured
/// (see [`semantic::search`]).
///
/// # Errors
/// Database errors; with an `embedder`, the endpoint's.
pub async fn retrieve(
    pool: &Pool,
    embedder: Option<&Embedder>,
    request: &CourseRequested,
    text: &str,
    k: i64,
) -> Result<Retrieval, SemanticError> {
    let prefix = request.source_filter.clone().unwrap_or_default();
    if queries::count(pool, request.user_id, &prefix).await? == 0 {
        return Ok(if prefix.is_empty() {
            Retrieval::NoLibrary
        } else {
            Retrieval::NoDocuments { prefix }
        });
    }
    let query = any_word_query(text);
    Ok(Retrieval::Hits(
        semantic::search(pool, embedder, request.user_id, text, &query, &prefix, k).await?,
    ))
}

/// The text a lesson's retrieval searches for: its title, concepts and objectives.
pub fn lesson_query(plan: &LessonPlan) -> String {
    let mut text = plan.title.clone();
    for c in plan.concepts.iter().chain(&plan.objectives) {
        text.push(' ');
        text.push_str(c);
    }
    text
}

/// The chunks of `hits` as the model is shown them, labelled `S1`, `S2`, ...
pub fn chunks(hits: &[SearchHit]) -> Vec<SourceChunk> {
    hits.iter()
        .enumerate()
        .map(|(i, h)| SourceChunk {
            label: format!("S{}", i + 1),
            chunk_id: h.chunk_id,
            source_id: h.source_id,
            version: u32::try_from(h.version).unwrap_or_default(),
            path: h.path.clone(),
            title: h.title.clone(),
            page: h.page.and_then(|p| u32::try_from(p).ok()),
            heading: (!h.heading_path.is_empty()).then(|| h.heading_path.join(" > ")),
            text: h.text.clone(),
            score_micros: (h.score.max(0.0) * 1_000_000.0).round() as u64,
        })
        .collect()
}

/// The record of `chunks` in the step's event.
pub fn retrieved(chunks: &[SourceChunk]) -> Vec<Retrieved> {
    chunks
        .iter()
        .map(|c| Retrieved {
            label: c.label.clone(),
            chunk_id: c.chunk_id,
            source_id: c.source_id,
            version: c.version,
            score_micros: c.score_micros,
        })
        .collect()
}

/// The first sentences of a passage, at most about `max` characters.
fn excerpt(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    for sentence in flat.split_inclusive(['.', '!', '?']) {
        if !out.is_empty() && out.len() + sentence.len() > max {
            break;
        }
        out.push_str(sentence);
    }
    if out.chars().count() > max + 200 {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out.trim().to_owned()
}

/// A lesson's record of citing `chunk`, quoting `passage` when it is the
/// chunk's own text, else the chunk's first sentences.
fn source_ref(chunk: &SourceChunk, passage: Option<&str>) -> SourceRef {
    let passage = passage
        .filter(|p| !p.trim().is_empty() && chunk.text.contains(*p))
        .map_or_else(
            || excerpt(&chunk.text, 400),
            |p| p.split_whitespace().collect::<Vec<_>>().join(" "),
        );
    SourceRef {
        title: format!("{} ({})", chunk.title, chunk.path),
        url: None,
        cited: Some(chunk.citation(passage)),
    }
}

/// Grounds a generated lesson in `chunks`: records what was retrieved and
/// makes the lesson's sources exactly the retrieved chunks it cites inline
/// (label, document id and version, chunk id, path, title, page or heading,
/// passage), in order of first citation, never the model's own list. The
/// passage is the chunk's text the model quoted when validation found its
/// quote there (see [`validate::quotes`]), else the chunk's first
/// sentences: always the chunk's own words. A
/// lesson that cites none of them (a client that ignores sources) gets a
/// section quoting them all with their `[Sn]` citations, so that its sources
/// are still checkable. No chunks: the lesson is left as the model wrote it.
pub fn ground_lesson(lesson: &mut LessonGenerated, chunks: &[SourceChunk]) {
    if chunks.is_empty() {
        return;
    }
    lesson.retrieved = retrieved(chunks);
    // The passages the model quoted, found in their chunks at validation.
    let quoted = |c: &SourceChunk| {
        lesson.sources.iter().find_map(|s| {
            s.cited
                .as_ref()
                .filter(|q| q.label == c.label && q.chunk_id == c.chunk_id)
                .map(|q| q.passage.clone())
        })
    };
    let cited: Vec<SourceRef> = validate::lesson_citations(lesson)
        .iter()
        .filter_map(|label| chunks.iter().find(|c| &c.label == label))
        .map(|c| source_ref(c, quoted(c).as_deref()))
        .collect();
    if !cited.is_empty() {
        lesson.sources = cited;
        return;
    }
    let mut body = String::new();
    for c in chunks {
        let place = match (c.page, &c.heading) {
            (Some(p), _) => format!(", page {p}"),
            (None, Some(h)) => format!(", {h}"),
            _ => String::new(),
        };
        body.push_str(&format!(
            "- {} [{}]\n  *{}{place}*\n",
            excerpt(&c.text, 400),
            c.label,
            c.title
        ));
    }
    lesson.sources = chunks.iter().map(|c| source_ref(c, None)).collect();
    let heading = "From your documents";
    lesson
        .content_md
        .push_str(&format!("\n\n## {heading}\n\n{body}"));
    lesson.sections.push(LessonSection {
        heading: heading.to_owned(),
        body,
    });
}

/// The message of a course whose `source_filter` matches no document.
pub fn no_documents_message(prefix: &str) -> String {
    format!(
        "no documents in your library under source_filter {prefix:?}: add some \
         (coursegen sources add PATH --prefix {prefix}, or POST /api/v1/sources), then retry"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn hit(text: &str, page: Option<i32>) -> SearchHit {
        SearchHit {
            chunk_id: Uuid::from_u128(7),
            source_id: Uuid::from_u128(8),
            version: 2,
            path: "bio/cells.pdf".into(),
            title: "Cells".into(),
            heading_path: vec![],
            page,
            text: text.into(),
            score: 0.25,
        }
    }

    #[test]
    fn any_word_query_joins_distinct_words_with_or() {
        assert_eq!(
            any_word_query("The Cell, the cell and ATP!"),
            "the or cell or and or atp"
        );
        assert_eq!(any_word_query("a b"), "");
    }

    #[test]
    fn a_grounded_lesson_cites_exactly_the_retrieved_chunks() {
        let mut lesson = LessonGenerated {
            content_md: "# L".into(),
            sources: vec![SourceRef {
                title: "Made up".into(),
                url: Some("https://example.org".into()),
                cited: None,
            }],
            ..LessonGenerated::default()
        };
        ground_lesson(
            &mut lesson,
            &chunks(&[hit("Ribosomes make proteins. More text.", Some(2))]),
        );
        assert_eq!(lesson.sources.len(), 1);
        let c = lesson.sources[0].cited.as_ref().unwrap();
        assert_eq!((c.label.as_str(), c.version, c.page), ("S1", 2, Some(2)));
        assert_eq!(c.passage, "Ribosomes make proteins. More text.");
        assert!(lesson.content_md.contains("[S1]"));
        assert_eq!(lesson.retrieved[0].score_micros, 250_000);
    }

    #[test]
    fn a_lesson_s_sources_are_the_retrieved_chunks_it_cites() {
        let mut lesson = LessonGenerated {
            content_md: "# L\n\nMembranes [S2] and more [S2, S9].".into(),
            ..LessonGenerated::default()
        };
        let hits = [hit("One.", None), hit("Two.", Some(4)), hit("Three.", None)];
        ground_lesson(&mut lesson, &chunks(&hits));
        assert_eq!(lesson.retrieved.len(), 3);
        let labels: Vec<_> = lesson
            .sources
            .iter()
            .map(|s| s.cited.as_ref().unwrap().label.as_str())
            .collect();
        assert_eq!(labels, ["S2"]);
        assert_eq!(lesson.sources[0].cited.as_ref().unwrap().passage, "Two.");
        assert!(!lesson.content_md.contains("From your documents"));
    }

    #[test]
    fn the_passage_recorded_is_the_quoted_chunk_text_and_never_a_forged_one() {
        let hits = [hit("Ribosomes make proteins. Lipids form membranes.", None)];
        let given = chunks(&hits);
        let lesson_quoting = |passage: &str| LessonGenerated {
            content_md: "Membranes [S1].".into(),
            sources: vec![SourceRef {
                title: "[S1] Cells".into(),
                url: None,
                cited: Some(given[0].citation(passage.into())),
            }],
            ..LessonGenerated::default()
        };
        let mut lesson = lesson_quoting("Lipids form membranes");
        ground_lesson(&mut lesson, &given);
        let c = lesson.sources[0].cited.as_ref().unwrap();
        assert_eq!(c.passage, "Lipids form membranes");
        let mut forged = lesson_quoting("Lipids are proteins");
        ground_lesson(&mut forged, &given);
        let c = forged.sources[0].cited.as_ref().unwrap();
        assert_eq!(c.passage, "Ribosomes make proteins. Lipids form membranes.");
    }

    #[test]
    fn no_hits_leave_the_lesson_alone() {
        let mut lesson = LessonGenerated::default();
        ground_lesson(&mut lesson, &[]);
        assert_eq!(lesson, LessonGenerated::default());
    }
}
