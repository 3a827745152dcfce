//! Text out of a file: Markdown, HTML and DOCX by heading ([`super::docx`]),
//! PDF by page, plain text whole.
//!
//! HTML keeps its main text only, readability-style: `<main>`, `<article>`
//! or `[role=main]` when the page has one, and never navigation, banners,
//! footers, asides, forms, scripts or styles. PDF's text layer comes from
//! `pdftotext` (poppler) in a child process with a timeout: a malformed PDF
//! can at worst fail that process, never this one.

use std::time::Duration;

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use scraper::{ElementRef, Html, Node, Selector};

use super::IngestError;

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// The formats the library reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Markdown,
    Text,
    Html,
    Pdf,
    Docx,
}

impl MediaType {
    /// The media type string stored with the document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Markdown => "text/markdown",
            Self::Text => "text/plain",
            Self::Html => "text/html",
            Self::Pdf => "application/pdf",
            Self::Docx => DOCX,
        }
    }

    /// From a media type (parameters such as `; charset=utf-8` ignored).
    pub fn parse(media_type: &str) -> Option<Self> {
        let base = media_type.split(';').next()?.trim().to_ascii_lowercase();
        match base.as_str() {
            "text/markdown" | "text/x-markdown" => Some(Self::Markdown),
            "text/plain" => Some(Self::Text),
            "text/html" | "application/xhtml+xml" => Some(Self::Html),
            "application/pdf" => Some(Self::Pdf),
            DOCX => Some(Self::Docx),
            _ => None,
        }
    }

    /// From a file name's extension.
    pub fn from_path(path: &str) -> Option<Self> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" | "mdown" => Some(Self::Markdown),
            "txt" | "text" => Some(Self::Text),
            "html" | "htm" | "xhtml" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            "docx" => Some(Self::Docx),
            _ => None,
        }
    }
}

/// A run of text under one heading path, or on one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
    pub text: String,
}

/// What a file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The document's own title (first H1, `<title>`, first line), if any.
    pub title: Option<String>,
    pub sections: Vec<Section>,
}

/// How long `pdftotext` may take on one file.
const PDF_TIMEOUT: Duration = Duration::from_secs(60);

/// Extracts the text of `bytes` read as `media_type`.
///
/// # Errors
/// [`IngestError::Unreadable`] for text that is not UTF-8, a PDF poppler
/// cannot read or a DOCX that is not a sound archive within the limits;
/// [`IngestError::Encrypted`] for an encrypted PDF.
pub async fn extract(media_type: MediaType, bytes: &[u8]) -> Result<Extracted, IngestError> {
    if media_type == MediaType::Pdf {
        return pdf(bytes, PDF_TIMEOUT).await;
    }
    // The other parsers run in-process: on a blocking thread, so that a
    // large document keeps no async worker (and the requests queued on it)
    // waiting, and so that a panic in one is this document's error, not
    // the process's.
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || extract_in_process(media_type, &bytes))
        .await
        .unwrap_or_else(|e| {
            Err(IngestError::Unreadable(if e.is_panic() {
                PARSER_PANICKED.into()
            } else {
                "its parsing was cancelled".into()
            }))
        })
}

/// The refusal of a document whose parser panicked (which the fuzz
/// targets count as a crash).
pub const PARSER_PANICKED: &str = "its parser failed on it";

/// [`extract`] for every type but PDF, on the calling thread.
///
/// # Errors
/// As [`extract`].
pub fn extract_in_process(media_type: MediaType, bytes: &[u8]) -> Result<Extracted, IngestError> {
    match media_type {
        MediaType::Docx => super::docx::extract(bytes),
        other => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| IngestError::Unreadable(format!("not UTF-8 text: {e}")))?;
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            match other {
                MediaType::Markdown => Ok(markdown(text)),
                MediaType::Html => html(text),
                _ => Ok(plain(text)),
            }
        }
    }
}

/// How deep the elements of an HTML page or a DOCX part may nest. Their
/// walks recurse once per level, and no real page or document comes near
/// this (a parser takes millions of levels in a few megabytes).
pub const MAX_DEPTH: usize = 256;

fn plain(text: &str) -> Extracted {
    let title = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .filter(|l| l.chars().count() <= 120)
        .map(str::to_owned);
    Extracted {
        title,
        sections: vec![Section {
            heading_path: Vec::new(),
            page: None,
            text: text.to_owned(),
        }],
    }
}

/// Keeps sections with text in them; trims.
fn push(
    sections: &mut Vec<Section>,
    heading_path: &[String],
    page: Option<u32>,
    text: &mut String,
) {
    let t = text.trim();
    if !t.is_empty() {
        sections.push(Section {
            heading_path: heading_path.to_vec(),
            page,
            text: t.to_owned(),
        });
    }
    text.clear();
}

fn level(l: HeadingLevel) -> usize {
    usize::from(crate::render::heading_level(l))
}

fn markdown(text: &str) -> Extracted {
    let mut sections = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut body = String::new();
    let mut heading: Option<(usize, String)> = None;
    let mut title = None;
    let names = |p: &[(usize, String)]| p.iter().map(|(_, h)| h.clone()).collect::<Vec<_>>();
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { level: l, .. }) => {
                push(&mut sections, &names(&path), None, &mut body);
                heading = Some((level(l), String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((l, h)) = heading.take() {
                    let h = h.trim().to_owned();
                    if l == 1 && title.is_none() && !h.is_empty() {
                        title = Some(h.clone());
                    }
                    path.retain(|(pl, _)| *pl < l);
                    path.push((l, h));
                }
            }
            Event::Text(t) | Event::Code(t) => match &mut heading {
                Some((_, h)) => h.push_str(&t),
                None => body.push_str(&t),
            },
            Event::SoftBreak | Event::HardBreak => match &mut heading {
                Some((_, h)) => h.push(' '),
                None => body.push('\n'),
            },
            Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::CodeBlock | TagEnd::TableRow) => {
                body.push_str("\n\n");
            }
            Event::End(TagEnd::TableCell) => body.push_str(" | "),
            _ => {}
        }
    }
    push(&mut sections, &names(&path), None, &mut body);
    Extracted { title, sections }
}

/// Elements whose text is never the page's content.
const BOILERPLATE: &[&str] = &[
    "nav", "header", "footer", "aside", "script", "style", "noscript", "form", "template", "svg",
    "button", "select", "iframe", "head",
];
const BOILERPLATE_ROLES: &[&str] = &[
    "navigation",
    "banner",
    "contentinfo",
    "complementary",
    "search",
];
/// Elements that end a paragraph.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "blockquote",
    "pre",
    "br",
    "dd",
    "dt",
    "figcaption",
    "hr",
];

fn html(text: &str) -> Result<Extracted, IngestError> {
    let doc = Html::parse_document(text);
    let mut depth = 0usize;
    for edge in doc.tree.root().traverse() {
        match edge {
            ego_tree::iter::Edge::Open(_) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(IngestError::Unreadable(format!(
                        "elements nested more than {MAX_DEPTH} deep"
                    )));
                }
            }
            ego_tree::iter::Edge::Close(_) => depth -= 1,
        }
    }
    let select = |s: &str| Selector::parse(s).expect("static selector");
    let title = doc
        .select(&select("title"))
        .next()
        .map(|t| collapse(&t.text().collect::<String>()))
        .filter(|t| !t.is_empty())
        .or_else(|| {
            doc.select(&select("h1"))
                .next()
                .map(|h| collapse(&h.text().collect::<String>()))
                .filter(|t| !t.is_empty())
        });
    let root = doc
        .select(&select("main, [role=main], article"))
        .next()
        .or_else(|| doc.select(&select("body")).next())
        .unwrap_or_else(|| doc.root_element());
    let mut walk = HtmlWalk::default();
    walk.element(root);
    let mut body = std::mem::take(&mut walk.body);
    let names = walk.names();
    push(&mut walk.sections, &names, None, &mut body);
    Ok(Extracted {
        title,
        sections: walk.sections,
    })
}

#[derive(Default)]
struct HtmlWalk {
    sections: Vec<Section>,
    path: Vec<(usize, String)>,
    body: String,
}

impl HtmlWalk {
    fn names(&self) -> Vec<String> {
        self.path.iter().map(|(_, h)| h.clone()).collect()
    }

    fn element(&mut self, el: ElementRef<'_>) {
        let e = el.value();
        let name = e.name();
        if BOILERPLATE.contains(&name)
            || e.attr("role")
                .is_some_and(|r| BOILERPLATE_ROLES.contains(&r))
            || e.attr("aria-hidden") == Some("true")
            || e.attr("hidden").is_some()
        {
            return;
        }
        if let Some(l) = name
            .strip_prefix('h')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=6).contains(n))
        {
            let mut body = std::mem::take(&mut self.body);
            let names = self.names();
            push(&mut self.sections, &names, None, &mut body);
            let h = collapse(&el.text().collect::<String>());
            self.path.retain(|(pl, _)| *pl < l);
            self.path.push((l, h));
            return;
        }
        for child in el.children() {
            match child.value() {
                Node::Text(t) => self.body.push_str(t),
                Node::Element(_) => {
                    if let Some(c) = ElementRef::wrap(child) {
                        self.element(c);
                    }
                }
                _ => {}
            }
        }
        if BLOCKS.contains(&name) {
            self.body.push_str("\n\n");
        }
    }
}

/// Collapses runs of whitespace to single spaces.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text layer of a PDF, by page, from `pdftotext` run as a child
/// process killed after `timeout`: whatever the bytes, poppler can at worst
/// fail or hang that process, never this one (hidden: the fuzz target sets a
/// shorter limit than ingest's).
#[doc(hidden)]
pub async fn pdf(bytes: &[u8], timeout: Duration) -> Result<Extracted, IngestError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(IngestError::Unreadable(
            "not a PDF file (no %PDF- header)".into(),
        ));
    }
    if is_encrypted(bytes) {
        return Err(IngestError::Encrypted);
    }
    let dir = std::env::temp_dir().join(format!("coursegen-pdf-{}", uuid::Uuid::new_v4()));
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| IngestError::Unreadable(format!("temporary directory: {e}")))?;
    let input = dir.join("in.pdf");
    let result = async {
        tokio::fs::write(&input, bytes)
            .await
            .map_err(|e| IngestError::Unreadable(format!("temporary file: {e}")))?;
        let child = tokio::process::Command::new("pdftotext")
            .args(["-enc", "UTF-8", "-q"])
            .arg(&input)
            .arg("-")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(timeout, child)
            .await
            .map_err(|_| IngestError::Unreadable(format!("pdftotext took over {timeout:?}")))?
            .map_err(|e| {
                IngestError::Unreadable(format!("cannot run pdftotext (poppler-utils): {e}"))
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("ncrypt") || err.contains("password") {
                return Err(IngestError::Encrypted);
            }
            return Err(IngestError::Unreadable(format!(
                "not a readable PDF ({})",
                err.trim().lines().next().unwrap_or("pdftotext failed")
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let text = result?;
    let mut sections = Vec::new();
    for (i, page) in text.split('\u{c}').enumerate() {
        let mut page = page.to_owned();
        push(&mut sections, &[], Some(i as u32 + 1), &mut page);
    }
    let title = sections.first().and_then(|s| {
        s.text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .filter(|l| l.chars().count() <= 120)
            .map(str::to_owned)
    });
    Ok(Extracted { title, sections })
}

/// Whether the PDF's trailer names an encryption dictionary.
fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.windows(8).any(|w| w == b"/Encrypt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_sections_carry_their_heading_path() {
        let md = "# Cells\n\nIntro text.\n\n## Membranes\n\nLipids form a bilayer.\n\n### Pumps\n\nATP drives pumps.\n\n## Nucleus\n\nDNA lives here.\n";
        let x = markdown(md);
        assert_eq!(x.title.as_deref(), Some("Cells"));
        let paths: Vec<_> = x
            .sections
            .iter()
            .map(|s| s.heading_path.join(" > "))
            .collect();
        assert_eq!(
            paths,
            [
                "Cells",
                "Cells > Membranes",
                "Cells > Membranes > Pumps",
                "Cells > Nucleus"
            ]
        );
        assert_eq!(x.sections[3].text, "DNA lives here.");
    }

    /// Deep nesting is refused before the walk, which recurses per level: a
    /// page of 100,000 nested elements would overflow the stack otherwise.
    #[tokio::test]
    async fn html_nested_past_the_limit_is_refused_and_near_it_is_read() {
        let nested = |n: usize| format!("<p>{}deep text{}</p>", "<b>".repeat(n), "</b>".repeat(n));
        match extract(MediaType::Html, nested(100_000).as_bytes()).await {
            Err(IngestError::Unreadable(why)) => assert!(why.contains("nested"), "{why}"),
            other => panic!("{:?}", other.map(|x| x.sections)),
        }
        let x = extract(MediaType::Html, nested(200).as_bytes())
            .await
            .unwrap();
        assert_eq!(x.sections[0].text, "deep text");
    }

    #[test]
    fn html_keeps_the_main_text_and_drops_navigation() {
        let page = r#"<html><head><title>Mitochondria</title><style>p{}</style></head>
            <body><nav><a href="/">Home</a> <a href="/x">NAVLINK</a></nav>
            <header>SITE BANNER</header>
            <main><h1>Mitochondria</h1><p>The powerhouse of the cell.</p>
            <div role="navigation">MENU</div>
            <h2>Structure</h2><p>Two membranes.</p><script>var x=1;</script></main>
            <footer>COPYRIGHT</footer></body></html>"#;
        let x = html(page).unwrap();
        assert_eq!(x.title.as_deref(), Some("Mitochondria"));
        let all: String = x.sections.iter().map(|s| s.text.clone()).collect();
        for junk in ["NAVLINK", "SITE BANNER", "MENU", "COPYRIGHT", "var x"] {
            assert!(!all.contains(junk), "{junk} leaked into {all:?}");
        }
        assert_eq!(x.sections[1].heading_path, ["Mitochondria", "Structure"]);
        assert_eq!(x.sections[1].text, "Two membranes.");
    }

    #[test]
    fn media_types_come_from_extensions_and_headers() {
        assert_eq!(MediaType::from_path("a/b.MD"), Some(MediaType::Markdown));
        assert_eq!(MediaType::from_path("a/b.docx"), Some(MediaType::Docx));
        assert_eq!(MediaType::from_path("a/b.odt"), None);
        assert_eq!(
            MediaType::parse("text/html; charset=utf-8"),
            Some(MediaType::Html)
        );
    }
}
