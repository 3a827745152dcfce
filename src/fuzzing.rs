//! Entry points of the cargo-fuzz targets in `fuzz/` (their own workspace):
//! each feeds arbitrary bytes to one parser of untrusted input and checks
//! what must hold whatever the bytes. Not an API: hidden from the docs, and
//! only here because the parsers are private to the crate.

use serde_json::Value;

use crate::domain::{CourseEvent, CourseRequest, RawCourseRequest};
use crate::ingress::http::courses::ListParams;
use crate::ingress::http::User;
use crate::ingress::nul;

/// Whether a decoded JSON value holds a NUL in any string or key.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// An AMQP request body: [`crate::ingress::amqp::wire::parse_request`]
/// never panics, and what it accepts holds no control character (so no
/// NUL) in the texts that reach SQL.
pub fn amqp_request(body: &[u8]) {
    if let Ok(request) = crate::ingress::amqp::wire::parse_request(body) {
        assert!(!request.topic.chars().any(char::is_control));
        assert!(!nul::in_json(body), "a body with a NUL was accepted");
    }
}

/// An HTTP JSON body, as `POST /courses/generate` reads it: no NUL that
/// serde decodes escapes the edge's scan (the scan may refuse more: a NUL
/// in a duplicate key's first value, which serde drops), and the request
/// rules never panic.
pub fn http_body(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    assert!(
        nul::in_json(body) || !holds_nul(&value),
        "a NUL decoded by serde passed the edge's scan"
    );
    if let Ok(raw) = RawCourseRequest::from_json(value) {
        let _ = CourseRequest::parse(raw);
    }
}

/// A query string of `GET /courses` (and `/jobs`): decoded as actix does
/// (`web::Query`), validated for a user and an admin; never panics, and
/// a query the edge lets through decodes to no NUL.
pub fn http_query(query: &[u8]) {
    let Ok(text) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(params) = actix_web::web::Query::<ListParams>::from_query(text) else {
        return;
    };
    let params = params.into_inner();
    if !nul::in_url(query) {
        for s in [&params.q, &params.tag, &params.author, &params.sort]
            .into_iter()
            .flatten()
        {
            assert!(!s.contains('\0'), "a NUL passed the edge: {text:?}");
        }
    }
    let user = User {
        id: uuid::Uuid::from_u128(1),
        admin: false,
    };
    let _ = params.into_page(&user, None);
}

/// A stored event, as `TYPE\nVERSION\nPAYLOAD-JSON`: upcasting never
/// panics, and an event it reads writes a payload that reads back as the
/// same event at the current version.
pub fn stored_event(input: &[u8]) {
    let mut parts = input.splitn(3, |&b| b == b'\n');
    let (Some(kind), Some(version), Some(payload)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(kind), Some(version)) = (
        std::str::from_utf8(kind),
        std::str::from_utf8(version)
            .ok()
            .and_then(|v| v.trim().parse::<i16>().ok()),
    ) else {
        return;
    };
    let Ok(payload) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    if let Ok(event) = CourseEvent::from_stored(kind, version, payload) {
        let stored = event.payload();
        let again = CourseEvent::from_stored(kind, event.event_version(), stored.clone())
            .expect("a payload this build wrote reads back");
        assert_eq!(again.payload(), stored, "the payload does not round-trip");
    }
}

/// The runtime the document targets block on (`pdftotext` runs as a
/// child process under tokio's timer).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// What any file taken into the library must be: chunks of real text safe
/// for PostgreSQL and the page (no NUL, no control character but line
/// breaks and tabs), within the chunk size, under clean headings, with a
/// title and a language code the store accepts. A refusal is a file's
/// fault, never the store's.
fn check_prepared(path: &str, bytes: &[u8]) {
    let source = crate::sources::NewSource {
        user_id: uuid::Uuid::nil(),
        path,
        bytes,
        media_type: None,
        language: None,
        title: None,
    };
    let content = match runtime().block_on(crate::sources::prepare(&source)) {
        Ok(content) => content,
        Err(e) => {
            assert!(e.is_rejection(), "{path}: not a rejection: {e}");
            // A parser's panic is caught (the file is refused), but is a bug.
            assert!(
                !e.to_string()
                    .contains(crate::sources::extract::PARSER_PANICKED),
                "{path}: {e}"
            );
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let clean = |t: &str| !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    assert!(!content.chunks.is_empty(), "{path}: no chunks but Ok");
    for chunk in &content.chunks {
        assert!(!chunk.text.is_empty() && chunk.text.trim() == chunk.text);
        assert!(
            clean(&chunk.text),
            "{path}: a control character in {:?}",
            chunk.text
        );
        assert!(
            chunk.text.chars().count() <= crate::sources::CHUNK_CHARS,
            "{path}: a chunk of {} characters",
            chunk.text.chars().count()
        );
        for h in &chunk.heading_path {
            assert!(!h.chars().any(char::is_control), "{path}: heading {h:?}");
        }
    }
    assert!(!content.title.is_empty() && !content.title.chars().any(char::is_control));
    assert!(content.title.chars().count() <= 300);
    crate::sources::parse_language(&content.language)
        .unwrap_or_else(|e| panic!("{path}: detected language refused: {e}"));
    assert_eq!(content.size, bytes.len() as u64);
}

/// An HTML page through the whole of ingest's preparation (extraction of
/// its main text, chunking, language): see [`check_prepared`].
pub fn extract_html(bytes: &[u8]) {
    check_prepared("fuzz/page.html", bytes);
}

/// A Markdown file, and the same bytes as plain text: see [`check_prepared`].
pub fn extract_markdown(bytes: &[u8]) {
    check_prepared("fuzz/notes.md", bytes);
    check_prepared("fuzz/notes.txt", bytes);
}

/// A PDF through `pdftotext` in its child process (a 5 s limit here, a
/// shorter one than ingest's so that a hang shows as an error well inside
/// libFuzzer's timeout): never a panic, only text by page or a clear refusal
/// (unreadable, encrypted).
pub fn extract_pdf(bytes: &[u8]) {
    use crate::sources::IngestError;
    let timeout = std::time::Duration::from_secs(5);
    match runtime().block_on(crate::sources::extract::pdf(bytes, timeout)) {
        Ok(extracted) => {
            let mut last = 0;
            for s in &extracted.sections {
                let page = s.page.expect("a PDF section has its page");
                assert!(page > last, "pages out of order");
                last = page;
                assert!(!s.text.is_empty() && s.text.trim() == s.text);
            }
        }
        Err(IngestError::Unreadable(why)) => assert!(!why.is_empty()),
        Err(IngestError::Encrypted) => {}
        Err(e) => panic!("a PDF refused as {e:?}"),
    }
}

/// A DOCX file through ingest's preparation (see [`check_prepared`]), and
/// the same bytes, when they are text, as the `word/document.xml` of a
/// document with Word's heading styles: mutated XML inside an archive
/// rarely gets past its checksums, so the second half reaches the walk of
/// paragraphs, headings and tables directly.
pub fn extract_docx(bytes: &[u8]) {
    const STYLES: &str = r#"<w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:style w:type="paragraph" w:styleId="Title"><w:name w:val="Title"/></w:style><w:style w:type="paragraph" w:styleId="Heading1"><w:name w:val="heading 1"/></w:style><w:style w:type="paragraph" w:styleId="Heading2"><w:name w:val="heading 2"/><w:pPr><w:outlineLvl w:val="1"/></w:pPr></w:style></w:styles>"#;
    check_prepared("fuzz/report.docx", bytes);
    let Ok(xml) = std::str::from_utf8(bytes) else {
        return;
    };
    match crate::sources::docx::from_parts(xml, Some(STYLES)) {
        Ok(x) => {
            for s in &x.sections {
                assert!(!s.text.is_empty() && s.text.trim() == s.text);
                assert!(s.heading_path.iter().all(|h| !h.trim().is_empty()));
                assert!(s.heading_path.len() <= 9);
            }
        }
        Err(e) => assert!(matches!(e, crate::sources::IngestError::Unreadable(_))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every committed seed and every crash ever found (saved under
    /// `fuzz/regressions/<target>/`) goes through its target on each
    /// `cargo test`, so a fixed crash stays fixed.
    #[test]
    fn the_committed_fuzz_inputs_replay_without_a_panic() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 8] = [
            ("amqp_request", super::amqp_request),
            ("extract_docx", super::extract_docx),
            ("extract_html", super::extract_html),
            ("extract_markdown", super::extract_markdown),
            ("extract_pdf", super::extract_pdf),
            ("http_body", super::http_body),
            ("http_query", super::http_query),
            ("stored_event", super::stored_event),
        ];
        let mut replayed = 0;
        for (name, target) in targets {
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let input = std::fs::read(&path).unwrap();
                    target(&input);
                    replayed += 1;
                }
            }
        }
        assert!(
            replayed >= 20,
            "only {replayed} inputs found under {root:?}"
        );
    }

    /// The upcaster's seeds are real stored payloads, one per event type and
    /// version: each must read (else the target would only fuzz the error path).
    #[test]
    fn every_stored_event_seed_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/stored_event");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut parts = text.splitn(3, '\n');
            let (kind, version, payload) = (
                parts.next().unwrap(),
                parts.next().unwrap().parse().unwrap(),
                serde_json::from_str(parts.next().unwrap()).unwrap(),
            );
            crate::domain::CourseEvent::from_stored(kind, version, payload)
                .unwrap_or_else(|e| panic!("{kind} v{version}: {e}"));
        }
    }
}
