//! The JSON and Markdown files of a course: `course.json`, `README.md` (an
//! overview and a table of contents) and one `NN-<lesson-slug>.md` per lesson.

use std::fmt::Write as _;

use super::model::{CourseExport, LessonExport};
use super::PackageFile;

/// `course.json`: the whole course, pretty-printed.
pub fn course_json(course: &CourseExport) -> PackageFile {
    let mut bytes = serde_json::to_vec_pretty(course).expect("a course serialises");
    bytes.push(b'\n');
    PackageFile::new("course.json", bytes)
}

/// `README.md` and the lesson files.
pub fn files(course: &CourseExport) -> Vec<PackageFile> {
    let mut out = vec![PackageFile::new("README.md", readme(course).into_bytes())];
    out.extend(
        course
            .lessons
            .iter()
            .map(|l| PackageFile::new(format!("{}.md", l.file_stem()), lesson(l).into_bytes())),
    );
    out
}

/// One-line text for a markdown list item or table cell (no line breaks).
fn inline(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn list(out: &mut String, heading: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "## {heading}\n");
    for item in items {
        let _ = writeln!(out, "- {}", inline(item));
    }
    out.push('\n');
}

/// The overview: title, description, metadata, outcomes and the table of contents.
pub fn readme(course: &CourseExport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", inline(&course.title));
    if !course.description.is_empty() {
        let _ = writeln!(out, "{}\n", course.description.trim());
    }
    let mut facts = vec![
        ("Topic", inline(&course.topic)),
        ("Language", course.language.clone()),
    ];
    if let Some(g) = &course.grade_level {
        facts.push(("Grade level", inline(g)));
    }
    if let Some(a) = &course.author {
        facts.push(("Author", inline(a)));
    }
    if let Some(d) = course.difficulty {
        facts.push((
            "Difficulty",
            serde_json::to_value(d)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ));
    }
    if !course.tags.is_empty() {
        facts.push(("Tags", course.tags.join(", ")));
    }
    if course.estimated_minutes > 0 {
        facts.push((
            "Estimated time",
            format!("{} min", course.estimated_minutes),
        ));
    }
    facts.push(("Course id", course.id.to_string()));
    for (k, v) in facts {
        let _ = writeln!(out, "- **{k}:** {v}");
    }
    out.push('\n');
    list(&mut out, "Prerequisites", &course.prerequisites);
    list(&mut out, "Learning outcomes", &course.learning_outcomes);
    let _ = writeln!(out, "## Contents\n");
    for l in &course.lessons {
        let _ = writeln!(
            out,
            "{}. [{}]({}.md)",
            l.number,
            inline(&l.title),
            l.file_stem()
        );
    }
    if !course.sources.is_empty() {
        let _ = writeln!(out, "\n## Sources\n");
        for s in &course.sources {
            let _ = writeln!(out, "- {}", source_line(s));
        }
    }
    out
}

fn source_line(source: &serde_json::Value) -> String {
    let title = source
        .get("title")
        .and_then(|t| t.as_str())
        .map(inline)
        .unwrap_or_else(|| inline(&source.to_string()));
    match source.get("url").and_then(|u| u.as_str()) {
        Some(url) => format!("{title} <{}>", inline(url)),
        None => title,
    }
}

/// A lesson's file: its markdown exactly as generated, then its quiz and sources.
pub fn lesson(lesson: &LessonExport) -> String {
    let mut out = lesson.content_md.clone();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if !lesson.quiz.is_empty() {
        let _ = writeln!(out, "\n---\n\n## Quiz\n");
        for (i, q) in lesson.quiz.iter().enumerate() {
            let _ = writeln!(out, "{}. {}\n", i + 1, inline(&q.question));
            for (j, option) in q.options.iter().enumerate() {
                let _ = writeln!(out, "   - {}) {}", letter(j), inline(option));
            }
            let answer = usize::try_from(q.answer_index).unwrap_or(usize::MAX);
            let _ = writeln!(
                out,
                "\n   Answer: {}. {}\n",
                letter(answer),
                inline(&q.explanation)
            );
        }
    }
    if !lesson.sources.is_empty() {
        let _ = writeln!(out, "\n## Sources\n");
        for s in &lesson.sources {
            let _ = writeln!(out, "- {}", source_line(s));
        }
    }
    out
}

/// `A`, `B`, ... for option `i` (`?` past `Z`).
pub(crate) fn letter(i: usize) -> char {
    u8::try_from(i)
        .ok()
        .filter(|i| *i < 26)
        .map_or('?', |i| char::from(b'A' + i))
}
