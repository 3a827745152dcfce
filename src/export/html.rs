//! The HTML pages of the SCORM and Common Cartridge packages: a lesson (its
//! markdown through [`crate::render::markdown`], the same rendering and
//! sanitising as the web app), its interactive elements and, for SCORM, its
//! quiz with the script that reports to the LMS. Everything a page needs is
//! in the package: no external resources.

use std::fmt::Write as _;

use super::markdown::letter;
use super::model::{CourseExport, LessonExport};
use crate::domain::{ElementBody, InteractiveElement};

/// The stylesheet every page links (`style.css` in the package).
pub const STYLE_CSS: &str = include_str!("assets/style.css");

/// The SCORM 1.2 runtime script of the lesson pages (`scorm.js`).
pub const SCORM_JS: &str = include_str!("assets/scorm.js");

/// Escapes text for XML and HTML (text and attribute values), dropping the
/// characters XML 1.0 does not allow at all.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c as u32, 0xFFFE | 0xFFFF) => {}
            c => out.push(c),
        }
    }
    out
}

/// What a lesson page carries besides the lesson.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// A SCORM SCO: the quiz as a form, scored and reported through the
    /// runtime API by `scorm.js`.
    Sco,
    /// Plain web content (the cartridge has the quiz as a QTI assessment).
    Web,
}

fn head(out: &mut String, language: &str, title: &str, css: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"{css}\">\n</head>\n",
        escape(language),
        escape(title),
    );
}

/// A lesson's page. `css` and `js` are the paths of the shared files
/// relative to the page.
pub fn lesson_page(
    course: &CourseExport,
    lesson: &LessonExport,
    page: Page,
    css: &str,
    js: &str,
) -> String {
    let mut out = String::new();
    head(&mut out, &course.language, &lesson.title, css);
    let _ = writeln!(out, "<body data-mastery=\"{MASTERY_SCORE}\">\n<main>");
    let _ = writeln!(
        out,
        "<p class=\"course\">{}</p>\n<h1>{}</h1>",
        escape(&course.title),
        escape(&lesson.title)
    );
    if !lesson.objectives.is_empty() {
        out.push_str("<aside class=\"objectives\"><h2>Objectives</h2><ul>\n");
        for o in &lesson.objectives {
            let _ = writeln!(out, "<li>{}</li>", escape(o));
        }
        out.push_str("</ul></aside>\n");
    }
    let _ = writeln!(
        out,
        "<article class=\"lesson\">\n{}</article>",
        crate::render::markdown(&lesson.content_md).html
    );
    if !lesson.elements.is_empty() {
        out.push_str("<section class=\"elements\">\n<h2>Practice</h2>\n");
        for e in &lesson.elements {
            element(&mut out, e);
        }
        out.push_str("</section>\n");
    }
    if page == Page::Sco && !lesson.quiz.is_empty() {
        quiz(&mut out, lesson);
    }
    if !lesson.sources.is_empty() {
        out.push_str("<section class=\"sources\"><h2>Sources</h2><ul>\n");
        for s in &lesson.sources {
            let title = s.get("title").and_then(|t| t.as_str()).unwrap_or("source");
            let _ = write!(out, "<li>{}", escape(title));
            if let Some(url) = s.get("url").and_then(|u| u.as_str()) {
                // Shown as text, not linked: a package opens no external resource.
                let _ = write!(out, " <code>{}</code>", escape(url));
            }
            out.push_str("</li>\n");
        }
        out.push_str("</ul></section>\n");
    }
    out.push_str("</main>\n");
    if page == Page::Sco {
        let _ = writeln!(out, "<script src=\"{js}\"></script>");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// The score (percent) from which a SCO's quiz counts as passed; also the
/// manifest's `adlcp:masteryscore`.
pub const MASTERY_SCORE: u32 = 80;

fn quiz(out: &mut String, lesson: &LessonExport) {
    out.push_str("<section class=\"quiz\">\n<h2>Quiz</h2>\n<form id=\"quiz\">\n");
    for (i, q) in lesson.quiz.iter().enumerate() {
        let _ = writeln!(
            out,
            "<fieldset class=\"question\" data-answer=\"{}\">\n<legend>{}. {}</legend>",
            q.answer_index,
            i + 1,
            escape(&q.question)
        );
        for (j, option) in q.options.iter().enumerate() {
            let _ = writeln!(
                out,
                "<label><input type=\"radio\" name=\"q{i}\" value=\"{j}\"> {}) {}</label>",
                letter(j),
                escape(option)
            );
        }
        let _ = writeln!(
            out,
            "<p class=\"explanation\" hidden>{}</p>\n</fieldset>",
            escape(&q.explanation)
        );
    }
    out.push_str(
        "<button type=\"submit\" id=\"submit-quiz\">Check answers</button>\n</form>\n\
         <p id=\"quiz-result\" role=\"status\"></p>\n</section>\n",
    );
}

fn details(out: &mut String, summary: &str, markdown: &str) {
    let _ = writeln!(
        out,
        "<details><summary>{}</summary>{}</details>",
        escape(summary),
        crate::render::markdown(markdown).html
    );
}

fn element(out: &mut String, e: &InteractiveElement) {
    let _ = writeln!(
        out,
        "<div class=\"element {}\" id=\"{}\">",
        e.body.kind(),
        escape(&e.id)
    );
    match &e.body {
        ElementBody::CodeBlock {
            language,
            code,
            caption,
            expected_output,
        } => {
            let _ = writeln!(
                out,
                "<figure><pre><code class=\"language-{}\">{}</code></pre><figcaption>{}</figcaption></figure>",
                escape(language),
                escape(code),
                escape(caption)
            );
            if let Some(output) = expected_output {
                let _ = writeln!(
                    out,
                    "<details><summary>Output</summary><pre>{}</pre></details>",
                    escape(output)
                );
            }
        }
        ElementBody::Exercise {
            prompt,
            hints,
            solution,
            ..
        } => {
            out.push_str(&crate::render::markdown(prompt).html);
            for (i, hint) in hints.iter().enumerate() {
                details(out, &format!("Hint {}", i + 1), hint);
            }
            details(out, "Solution", solution);
        }
        ElementBody::SingleChoice {
            question,
            options,
            answer_index,
            explanation,
        } => {
            choices(out, question, options);
            let answer = usize::try_from(*answer_index).unwrap_or(usize::MAX);
            details(out, "Answer", &format!("{}. {explanation}", letter(answer)));
        }
        ElementBody::MultipleChoice {
            question,
            options,
            answer_indexes,
            explanation,
        } => {
            choices(out, question, options);
            let letters: Vec<String> = answer_indexes
                .iter()
                .map(|i| letter(usize::try_from(*i).unwrap_or(usize::MAX)).to_string())
                .collect();
            details(
                out,
                "Answer",
                &format!("{}. {explanation}", letters.join(", ")),
            );
        }
        ElementBody::TrueFalse {
            question,
            answer,
            explanation,
        } => {
            let _ = writeln!(out, "<p>{}</p>", escape(question));
            let verdict = if *answer { "True" } else { "False" };
            details(out, "Answer", &format!("{verdict}. {explanation}"));
        }
        ElementBody::ShortAnswer {
            question,
            accepted_answers,
            explanation,
        } => {
            let _ = writeln!(out, "<p>{}</p>", escape(question));
            details(
                out,
                "Answer",
                &format!("{}. {explanation}", accepted_answers.join(" / ")),
            );
        }
    }
    out.push_str("</div>\n");
}

fn choices(out: &mut String, question: &str, options: &[String]) {
    let _ = writeln!(out, "<p>{}</p>\n<ol type=\"A\">", escape(question));
    for o in options {
        let _ = writeln!(out, "<li>{}</li>", escape(o));
    }
    out.push_str("</ol>\n");
}

/// The course overview page of the cartridge: description and outline.
pub fn overview_page(course: &CourseExport, css: &str) -> String {
    let mut out = String::new();
    head(&mut out, &course.language, &course.title, css);
    let _ = writeln!(out, "<body>\n<main>\n<h1>{}</h1>", escape(&course.title));
    let _ = writeln!(out, "<p>{}</p>", escape(&course.description));
    if !course.learning_outcomes.is_empty() {
        out.push_str("<h2>Learning outcomes</h2><ul>\n");
        for o in &course.learning_outcomes {
            let _ = writeln!(out, "<li>{}</li>", escape(o));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h2>Lessons</h2><ol>\n");
    for l in &course.lessons {
        let _ = writeln!(out, "<li>{}</li>", escape(&l.title));
    }
    out.push_str("</ol>\n</main>\n</body>\n</html>\n");
    out
}
