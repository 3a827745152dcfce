//! Lesson markdown to HTML that is safe to show.
//!
//! A lesson is model output, and model output is untrusted: it may hold
//! `<script>`, event-handler attributes or `javascript:` links, by accident or
//! because a source document told the model to write them. Every page that
//! shows a lesson (the web app, the SCORM and Common Cartridge packages) goes
//! through [`markdown`], which renders with pulldown-cmark and then sanitises
//! the result with ammonia's allow-list, so the two always agree.

use std::collections::HashSet;
use std::sync::OnceLock;

use pulldown_cmark::{html, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// A lesson rendered for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Sanitised HTML, ready to embed in a page.
    pub html: String,
    /// The document's headings in order, for a table of contents. Their ids
    /// are the `id` attributes of the headings in [`Rendered::html`].
    pub headings: Vec<Heading>,
}

/// One heading of a rendered document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    /// 1 for `#`, 2 for `##`, and so on.
    pub level: u8,
    /// The anchor, unique within the document: `sec-` and a slug of the text.
    pub id: String,
    /// The heading's plain text.
    pub text: String,
}

/// Renders markdown to sanitised HTML with an anchor on every heading.
///
/// Raw HTML in the markdown is kept only where the allow-list permits it:
/// scripts, styles, iframes, forms, event handlers and URLs with schemes other
/// than `http`, `https` and `mailto` are removed. Links get
/// `rel="noopener noreferrer nofollow"`. Fenced code keeps its
/// `language-<name>` class so that a highlighter can pick it up.
pub fn markdown(source: &str) -> Rendered {
    render(source, Place::Document)
}

/// Renders a lesson's markdown for a page whose own `<h1>` is the lesson's
/// `title`, so that the page keeps exactly one `<h1>`: a leading `#`
/// heading repeating the title (as `Lesson 2: <title>` too) is left out,
/// any other `#` heading becomes `##`, and `<h1>` tags in raw HTML are
/// dropped (their text is kept). Otherwise as [`markdown`].
pub fn lesson(source: &str, title: &str) -> Rendered {
    render(source, Place::UnderTitle(title))
}

/// Renders a short text that sits inside a section of a page (an
/// exercise's prompt, a hint, a solution): sanitised as [`markdown`], its
/// headings shown as `<h4>` and below, without anchors, and `<h1>` to
/// `<h3>` tags in raw HTML dropped (their text is kept).
pub fn snippet(source: &str) -> String {
    render(source, Place::Snippet).html
}

/// Where rendered markdown goes, which decides its heading levels.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// A document of its own (an export's page): headings as written.
    Document,
    /// Under a page's `<h1>` holding this title.
    UnderTitle(&'a str),
    /// Inside a section of a page.
    Snippet,
}

fn render(source: &str, place: Place<'_>) -> Rendered {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    options.insert(Options::ENABLE_FOOTNOTES);

    let mut events: Vec<Event<'_>> = Parser::new_ext(source, options).collect();
    if let Place::UnderTitle(title) = place {
        drop_leading_title(&mut events, title);
    }
    let mut headings = Vec::new();
    let mut used = HashSet::new();
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading { level, .. }) = &events[i] {
            let level = placed_level(*level, place);
            let text = heading_text(&events[i + 1..]);
            let id = match place {
                Place::Snippet => None,
                _ => Some(unique_id(&text, &mut used)),
            };
            if let Event::Start(Tag::Heading {
                id: slot,
                level: shown,
                ..
            }) = &mut events[i]
            {
                *slot = id.clone().map(Into::into);
                *shown = html_level(level);
            }
            if let Some(id) = id {
                headings.push(Heading { level, id, text });
            }
        } else if let Event::End(TagEnd::Heading(level)) = &mut events[i] {
            *level = html_level(placed_level(*level, place));
        }
        i += 1;
    }

    let mut unsafe_html = String::with_capacity(source.len() * 3 / 2);
    html::push_html(&mut unsafe_html, events.into_iter());
    Rendered {
        html: sanitizer(place).clean(&unsafe_html).to_string(),
        headings,
    }
}

/// The level a heading written at `level` is shown at in `place`.
fn placed_level(level: HeadingLevel, place: Place<'_>) -> u8 {
    let level = heading_level(level);
    match place {
        Place::Document => level,
        Place::UnderTitle(_) => level.max(2),
        Place::Snippet => (level + 3).min(6),
    }
}

/// Leaves out a `#` heading that opens the text and repeats `title`.
fn drop_leading_title(events: &mut Vec<Event<'_>>, title: &str) {
    let Some(Event::Start(Tag::Heading {
        level: HeadingLevel::H1,
        ..
    })) = events.first()
    else {
        return;
    };
    let norm = |t: &str| {
        t.trim()
            .trim_end_matches(['.', ':'])
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (text, title) = (norm(&heading_text(&events[1..])), norm(title));
    let repeats =
        !text.is_empty() && !title.is_empty() && (text.ends_with(&title) || title.ends_with(&text));
    if !repeats {
        return;
    }
    if let Some(end) = events
        .iter()
        .position(|e| matches!(e, Event::End(TagEnd::Heading(_))))
    {
        events.drain(..=end);
    }
}

/// `h1` for 1 ... `h6` for 6 (and above).
fn html_level(level: u8) -> HeadingLevel {
    match level {
        0 | 1 => HeadingLevel::H1,
        2 => HeadingLevel::H2,
        3 => HeadingLevel::H3,
        4 => HeadingLevel::H4,
        5 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    }
}

/// The plain text of a heading: everything up to its end tag.
fn heading_text(events: &[Event<'_>]) -> String {
    let mut text = String::new();
    for event in events {
        match event {
            Event::End(TagEnd::Heading(_)) => break,
            Event::Text(t) | Event::Code(t) => text.push_str(t),
            Event::SoftBreak | Event::HardBreak => text.push(' '),
            _ => {}
        }
    }
    text.trim().to_string()
}

/// 1 for `h1` ... 6 for `h6`.
pub(crate) fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// `sec-` and a lowercase ASCII slug of `text`, with `-2`, `-3`... for repeats.
fn unique_id(text: &str, used: &mut HashSet<String>) -> String {
    let base = format!("sec-{}", slug(text));
    let mut id = base.clone();
    let mut n = 2;
    while !used.insert(id.clone()) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// A lowercase slug of letters and digits joined by single dashes; `section`
/// when nothing is left. Non-ASCII letters are kept, so headings in any
/// language get readable anchors.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut dash = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        } else {
            dash = true;
        }
        if out.len() >= 64 {
            break;
        }
    }
    if out.is_empty() {
        out.push_str("section");
    }
    out
}

/// One sanitiser per place for the process: building the allow-list is
/// not free. Text under a page's title may not open another `<h1>`, nor
/// a snippet any heading above `<h4>`.
fn sanitizer(place: Place<'_>) -> &'static ammonia::Builder<'static> {
    static DOCUMENT: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    static UNDER_TITLE: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    static SNIPPET: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    let (cell, banned): (_, &[&str]) = match place {
        Place::Document => (&DOCUMENT, &[]),
        Place::UnderTitle(_) => (&UNDER_TITLE, &["h1"]),
        Place::Snippet => (&SNIPPET, &["h1", "h2", "h3"]),
    };
    cell.get_or_init(|| {
        let mut builder = ammonia::Builder::default();
        for tag in ["h1", "h2", "h3", "h4", "h5", "h6", "li"] {
            builder.add_tag_attributes(tag, ["id"]);
        }
        builder
            .add_tags(["input"])
            .add_tag_attributes("input", ["type", "checked", "disabled"])
            .add_tag_attributes("sup", ["class", "id"])
            .add_tag_attributes("div", ["class", "id"])
            .add_allowed_classes("code", language_classes())
            .link_rel(Some("noopener noreferrer nofollow"))
            .url_schemes(HashSet::from(["http", "https", "mailto"]))
            .url_relative(ammonia::UrlRelative::PassThrough)
            .id_prefix(None)
            .rm_tags(banned.iter().copied());
        builder
    })
}

/// The `language-*` classes a fenced code block may carry.
fn language_classes() -> Vec<&'static str> {
    [
        "bash",
        "c",
        "cpp",
        "csharp",
        "css",
        "go",
        "html",
        "java",
        "javascript",
        "js",
        "json",
        "kotlin",
        "latex",
        "markdown",
        "php",
        "python",
        "r",
        "ruby",
        "rust",
        "sh",
        "shell",
        "sql",
        "swift",
        "text",
        "toml",
        "typescript",
        "ts",
        "xml",
        "yaml",
    ]
    .into_iter()
    .map(|l| &*Box::leak(format!("language-{l}").into_boxed_str()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_unique_anchors_and_a_table_of_contents() {
        let r = markdown("# Cells\n\nText.\n\n## Parts of a cell\n\n## Parts of a cell\n");
        assert_eq!(
            r.headings.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["sec-cells", "sec-parts-of-a-cell", "sec-parts-of-a-cell-2"]
        );
        assert_eq!(r.headings[1].level, 2);
        assert!(
            r.html.contains(r#"<h2 id="sec-parts-of-a-cell-2">"#),
            "{}",
            r.html
        );
    }

    #[test]
    fn scripts_handlers_and_javascript_links_are_removed() {
        let r = markdown(
            "Hi <script>alert(1)</script>\n\n<img src=x onerror=\"alert(2)\">\n\n\
             [click](javascript:alert(3)) <a href=\"JaVaScRiPt:alert(4)\">x</a>\n\n\
             <iframe src=\"https://example.org\"></iframe><style>body{}</style>",
        );
        let html = r.html.to_lowercase();
        for bad in [
            "<script",
            "onerror",
            "javascript:",
            "<iframe",
            "<style",
            "alert(1)",
        ] {
            assert!(!html.contains(bad), "{bad} survived in {}", r.html);
        }
        assert!(html.contains("<img"), "{}", r.html);
        let local = markdown("[passage](#cite-S3) [page](/courses/1)");
        assert!(
            local.html.contains(r##"href="#cite-S3""##),
            "{}",
            local.html
        );
        assert!(
            local.html.contains(r#"href="/courses/1""#),
            "{}",
            local.html
        );
    }

    #[test]
    fn code_keeps_its_language_class_and_links_get_rel() {
        let r = markdown("```rust\nfn main() {}\n```\n\n[docs](https://doc.rust-lang.org) <span class=\"x\">a</span>");
        assert!(
            r.html.contains(r#"<code class="language-rust">"#),
            "{}",
            r.html
        );
        assert!(
            r.html.contains(r#"rel="noopener noreferrer nofollow""#),
            "{}",
            r.html
        );
        let unknown = markdown("```evil onload=x\nx\n```");
        assert!(!unknown.html.contains("onload"), "{}", unknown.html);
    }

    #[test]
    fn a_lesson_under_its_title_has_no_h1_of_its_own() {
        let r = lesson(
            "# Lesson 2: Cell parts\n\nIntro.\n\n# Membranes\n\n## Inside\n\n<h1>raw</h1>",
            "Cell parts",
        );
        assert!(!r.html.contains("<h1"), "{}", r.html);
        assert!(!r.html.contains("Lesson 2"), "{}", r.html);
        assert!(
            r.html.contains(r#"<h2 id="sec-membranes">Membranes</h2>"#),
            "{}",
            r.html
        );
        assert!(r.html.contains("raw"), "{}", r.html);
        let levels: Vec<_> = r
            .headings
            .iter()
            .map(|h| (h.level, h.text.as_str()))
            .collect();
        assert_eq!(levels, [(2, "Membranes"), (2, "Inside")]);
        // A first heading that is not the title is kept, one level down.
        let other = lesson("# Something else\n\nText.", "Cell parts");
        assert!(
            other.html.contains("<h2 id=\"sec-something-else\">"),
            "{}",
            other.html
        );
    }

    #[test]
    fn a_snippet_shows_headings_below_the_page_sections() {
        let html = snippet("# Step\n\n## Detail\n\n<h2>raw</h2> <script>x()</script>");
        assert!(
            html.contains("<h4>Step</h4>") && html.contains("<h5>Detail</h5>"),
            "{html}"
        );
        assert!(!html.contains("<h2") && !html.contains("<script"), "{html}");
    }

    #[test]
    fn slugs_keep_letters_of_any_language() {
        assert_eq!(slug("Zellkern & Zellmembran!"), "zellkern-zellmembran");
        assert_eq!(slug("Ядро клетки"), "ядро-клетки");
        assert_eq!(slug("***"), "section");
    }
}
