//! The source library: files in, document streams out.
//!
//! - [`extract`]: text by format (Markdown, plain text, HTML main text, PDF
//!   text layer, DOCX paragraphs and tables by heading in [`docx`]).
//! - [`prepare`]: a file's bytes to a document version (title, language,
//!   hash, chunks with their heading path or page), checked, nothing stored.
//! - [`ingest`] / [`remove`]: decide against the document's stream and append
//!   (the same content at the same path records nothing).
//!
//! - [`embeddings`] and [`semantic`]: optional vectors per chunk, stored at
//!   ingest, fused with the full-text ranks at retrieval.
//! - [`grounding`]: retrieval for a course's steps, recorded in their
//!   events, and the lesson citations built from what was retrieved.
//!
//! Queries of the projected library (list, one document, search) are in
//! [`crate::projections::sources`].

pub mod docx;
pub mod embeddings;
pub mod extract;
pub mod grounding;
pub mod semantic;

use sha2::{Digest, Sha256};
use text_splitter::{ChunkConfig, TextSplitter};
use uuid::Uuid;

use crate::domain::sources::{
    decide_ingest, decide_remove, evolve_source, source_id, SourceChunk, SourceContent,
    SourceEvent, SourceState,
};
use crate::store::{AlsoWrite, Appended, EventStore, Metadata, NewEvent, StoreError};
pub use extract::MediaType;

/// The largest file the library takes (bytes).
pub const MAX_SOURCE_BYTES: usize = 25 * 1024 * 1024;
/// The longest library path (characters).
pub const MAX_PATH_CHARS: usize = 512;
/// Characters per chunk at most (the splitter fills chunks up to it on
/// sentence and paragraph boundaries).
pub(crate) const CHUNK_CHARS: usize = 1000;

/// Why a file was not taken into the library. Nothing is stored for it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported type {0} (supported: Markdown, plain text, HTML, PDF, DOCX)")]
    Unsupported(String),
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("encrypted PDF: its text cannot be read without the password")]
    Encrypted,
    #[error("no text in it")]
    Empty,
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("invalid language: {0}")]
    InvalidLanguage(String),
    /// The embeddings endpoint failed: nothing was stored (a document
    /// without its vectors would be silently missing from semantic retrieval).
    #[error("{0}; nothing was stored, try again when the embeddings endpoint answers")]
    Embeddings(embeddings::EmbeddingsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// Whether the file itself is at fault (a skip with a reason; a 4xx).
    pub fn is_rejection(&self) -> bool {
        !matches!(self, Self::Store(_) | Self::Embeddings(_))
    }
}

/// A library path: relative, `/`-separated, no `.` or `..` segments, no
/// control characters, at most [`MAX_PATH_CHARS`].
///
/// # Errors
/// [`IngestError::InvalidPath`] saying what is wrong.
pub fn parse_path(path: &str) -> Result<String, IngestError> {
    let bad = |why: &str| IngestError::InvalidPath(format!("{path:?}: {why}"));
    // Before trimming: a tab or a form feed at either end is still one.
    if path.chars().any(char::is_control) {
        return Err(bad("control characters"));
    }
    let p = path.trim().replace('\\', "/");
    let p = p.trim_start_matches('/');
    if p.is_empty() {
        return Err(bad("empty"));
    }
    if p.chars().count() > MAX_PATH_CHARS {
        return Err(bad(&format!("longer than {MAX_PATH_CHARS} characters")));
    }
    let segments: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(bad("`.` and `..` are not allowed"));
    }
    if p.ends_with('/') {
        return Err(bad("names a folder, not a file"));
    }
    Ok(segments.join("/"))
}

/// A path prefix filter: like a path, but may end with `/` (or be empty: everything).
///
/// # Errors
/// [`IngestError::InvalidPath`].
pub fn parse_prefix(prefix: &str) -> Result<String, IngestError> {
    if prefix.chars().any(char::is_control) {
        return Err(IngestError::InvalidPath(format!(
            "{prefix:?}: control characters"
        )));
    }
    let p = prefix.trim();
    if p.is_empty() || p == "/" {
        return Ok(String::new());
    }
    let folder = p.ends_with('/');
    let mut out = parse_path(p.trim_end_matches('/'))?;
    if folder {
        out.push('/');
    }
    Ok(out)
}

/// A prefix to filter a listing or a search by: any text without control
/// characters. One that [`parse_prefix`] takes is normalised the same way;
/// any other is kept as given (trimmed), since a filter only compares
/// strings: `.` finds `.notes/`, and `a/../b` finds nothing.
///
/// # Errors
/// [`IngestError::InvalidPath`] for control characters.
pub fn parse_prefix_filter(prefix: &str) -> Result<String, IngestError> {
    match parse_prefix(prefix) {
        Err(IngestError::InvalidPath(_)) if !prefix.chars().any(char::is_control) => {
            Ok(prefix.trim().to_owned())
        }
        other => other,
    }
}

/// A language code (`en`, `pt-BR`): letters, digits and dashes, 2 to 35 characters.
///
/// # Errors
/// [`IngestError::InvalidLanguage`].
pub fn parse_language(language: &str) -> Result<String, IngestError> {
    let l = language.trim();
    let ok = (2..=35).contains(&l.len())
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && l.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(l.to_owned())
    } else {
        Err(IngestError::InvalidLanguage(format!(
            "{language:?} is not a language code such as en or pt-BR"
        )))
    }
}

/// A file to take into the library.
#[derive(Debug, Clone)]
pub struct NewSource<'a> {
    pub user_id: Uuid,
    /// Library path (checked by [`parse_path`]).
    pub path: &'a str,
    pub bytes: &'a [u8],
    /// Declared media type; from the path's extension (or a PDF header) when `None`.
    pub media_type: Option<&'a str>,
    /// Language code; detected from the text when `None`.
    pub language: Option<&'a str>,
    /// Title; the document's own (first H1, `<title>`, first line) or the file name when `None`.
    pub title: Option<&'a str>,
}

/// Reads and checks a file, giving the content of its next version (chunk
/// ids are assigned when the version is decided).
///
/// # Errors
/// Any [`IngestError`] but `Store`.
pub async fn prepare(source: &NewSource<'_>) -> Result<SourceContent, IngestError> {
    let path = parse_path(source.path)?;
    if source.bytes.len() > MAX_SOURCE_BYTES {
        return Err(IngestError::TooLarge {
            size: source.bytes.len(),
            limit: MAX_SOURCE_BYTES,
        });
    }
    let media_type = match source.media_type.filter(|m| {
        let m = m.trim();
        !m.is_empty() && m != "application/octet-stream"
    }) {
        Some(m) => MediaType::parse(m).ok_or_else(|| IngestError::Unsupported(m.to_owned()))?,
        None => MediaType::from_path(&path)
            .or_else(|| source.bytes.starts_with(b"%PDF-").then_some(MediaType::Pdf))
            .ok_or_else(|| {
                IngestError::Unsupported(match path.rsplit_once('.') {
                    Some((_, ext)) if !ext.contains('/') => format!(".{ext}"),
                    _ => "without a file extension".to_owned(),
                })
            })?,
    };
    let extracted = extract::extract(media_type, source.bytes).await?;
    let mut chunks = Vec::new();
    let splitter = TextSplitter::new(ChunkConfig::new(CHUNK_CHARS));
    for section in &extracted.sections {
        let text = clean(&section.text);
        for piece in splitter.chunks(&text) {
            let piece = piece.trim();
            if piece.is_empty() {
                continue;
            }
            chunks.push(SourceChunk {
                id: Uuid::nil(),
                ordinal: 0,
                heading_path: section.heading_path.iter().map(|h| clean_line(h)).collect(),
                page: section.page,
                text: piece.to_owned(),
            });
        }
    }
    if chunks.is_empty() {
        return Err(IngestError::Empty);
    }
    let language = match source.language {
        Some(l) => parse_language(l)?,
        None => detect_language(&chunks),
    };
    let file_name = path.rsplit('/').next().unwrap_or(&path);
    let title = source
        .title
        .map(clean_line)
        .filter(|t| !t.is_empty())
        .or(extracted.title.map(|t| clean_line(&t)))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            file_name
                .rsplit_once('.')
                .map_or(file_name, |(stem, _)| stem)
                .to_owned()
        });
    Ok(SourceContent {
        user_id: source.user_id,
        title: title.chars().take(300).collect(),
        path,
        media_type: media_type.as_str().to_owned(),
        size: source.bytes.len() as u64,
        content_hash: format!("sha256:{:x}", Sha256::digest(source.bytes)),
        language,
        chunks,
    })
}

/// Text safe for PostgreSQL and the page: no NUL or control characters but
/// line breaks and tabs.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

fn clean_line(text: &str) -> String {
    clean(text).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The language of the document's text, as a two-letter code where
/// PostgreSQL has a text search configuration for it (else whatlang's
/// three-letter code, searched with the `simple` configuration). `en` when
/// unsure.
fn detect_language(chunks: &[SourceChunk]) -> String {
    let mut sample = String::new();
    for c in chunks {
        if sample.len() > 4000 {
            break;
        }
        sample.push_str(&c.text);
        sample.push('\n');
    }
    let Some(info) = whatlang::detect(&sample) else {
        return "en".to_owned();
    };
    if info.confidence() < 0.5 {
        return "en".to_owned();
    }
    let code = info.lang().code();
    let two = match code {
        "eng" => "en",
        "fra" => "fr",
        "deu" => "de",
        "spa" => "es",
        "ita" => "it",
        "por" => "pt",
        "nld" => "nl",
        "rus" => "ru",
        "swe" => "sv",
        "nob" => "no",
        "dan" => "da",
        "fin" => "fi",
        "hun" => "hu",
        "ron" => "ro",
        "tur" => "tr",
        "ell" => "el",
        "ind" => "id",
        "lit" => "lt",
        "nep" => "ne",
        "tam" => "ta",
        "hye" => "hy",
        "cat" => "ca",
        "hin" => "hi",
        "srp" => "sr",
        "ara" => "ar",
        other => other,
    };
    two.to_owned()
}

/// What ingesting a file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// A new document (or one added again after its removal).
    Added {
        id: Uuid,
        version: u32,
        chunks: usize,
        appended: Appended,
    },
    /// Changed content at the same path: a new version.
    Updated {
        id: Uuid,
        version: u32,
        chunks: usize,
        appended: Appended,
    },
    /// The same content is the current version already: nothing recorded.
    Unchanged { id: Uuid, version: u32 },
}

impl IngestOutcome {
    /// The document's id.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Added { id, .. } | Self::Updated { id, .. } | Self::Unchanged { id, .. } => *id,
        }
    }

    /// The event appended, if any (to wait for the projection).
    pub fn appended(&self) -> Option<Appended> {
        match self {
            Self::Added { appended, .. } | Self::Updated { appended, .. } => Some(*appended),
            Self::Unchanged { .. } => None,
        }
    }
}

/// A document's state folded from its stream.
///
/// # Errors
/// Database errors; a stored event that is not a document's.
pub async fn load(store: &EventStore, id: Uuid) -> Result<SourceState, StoreError> {
    Ok(read(store, id)
        .await?
        .iter()
        .fold(SourceState::default(), |state, (_, e)| {
            evolve_source(state, e)
        }))
}

/// The document's events, each with when it was recorded.
async fn read(
    store: &EventStore,
    id: Uuid,
) -> Result<Vec<(chrono::DateTime<chrono::Utc>, SourceEvent)>, StoreError> {
    store
        .read_stream(id)
        .await?
        .into_iter()
        .map(|r| {
            SourceEvent::from_stored(&r.event_type, r.event_version, r.payload)
                .map(|e| (r.recorded_at, e))
                .map_err(|source| StoreError::Corrupt {
                    position: r.global_position,
                    source,
                })
        })
        .collect()
}

/// The document's row as the `sources` projection will show it, folded from
/// its stream: what a write answers when the projection lags. `None` for a
/// stream with no event.
///
/// # Errors
/// Database errors; a stored event that is not a document's.
pub async fn row_from_log(
    store: &EventStore,
    id: Uuid,
) -> Result<Option<crate::projections::sources::queries::SourceRow>, StoreError> {
    use crate::projections::sources::queries::SourceRow;
    let mut row: Option<SourceRow> = None;
    for (recorded_at, e) in read(store, id).await? {
        match e.content() {
            Some((version, c)) => {
                let created_at = row.as_ref().map_or(recorded_at, |s| s.created_at);
                row = Some(SourceRow {
                    id,
                    user_id: c.user_id,
                    path: c.path.clone(),
                    title: c.title.clone(),
                    media_type: c.media_type.clone(),
                    size_bytes: i64::try_from(c.size).unwrap_or(i64::MAX),
                    content_hash: c.content_hash.clone(),
                    language: c.language.clone(),
                    version: i32::try_from(version).unwrap_or(i32::MAX),
                    chunk_count: i32::try_from(c.chunks.len()).unwrap_or(i32::MAX),
                    created_at,
                    updated_at: recorded_at,
                    deleted_at: None,
                });
            }
            None => {
                if let Some(s) = row.as_mut() {
                    s.deleted_at = Some(recorded_at);
                    s.updated_at = recorded_at;
                }
            }
        }
    }
    Ok(row)
}

/// The search vectors of a document version's chunks, stored by the
/// statement appending its event (a chunk id fixes its vector: one
/// already stored is the same).
const SEARCH_VECTORS: AlsoWrite = AlsoWrite {
    prepare: include_str!("sql/store_search_vectors.sql"),
    write: "INSERT INTO chunk_search_vectors (chunk_id, tsv)
            SELECT chunk_id, tsv FROM prepared WHERE EXISTS (SELECT FROM appended)
            ON CONFLICT (chunk_id) DO NOTHING",
};

/// [`ingest_with`] without embeddings: full text alone.
///
/// # Errors
/// [`IngestError`]: the file's faults, or the store's.
pub async fn ingest(
    store: &EventStore,
    source: &NewSource<'_>,
    metadata: &Metadata,
) -> Result<IngestOutcome, IngestError> {
    ingest_with(store, None, source, metadata).await
}

/// Prepares the file and records it as its document's next version, unless
/// that content is the current version already. A concurrent writer of the
/// same document makes this decide again on the new state. The statement
/// appending the event also stores its chunks' search vectors
/// (`chunk_search_vectors`, `sql/store_search_vectors.sql`): every path that
/// ingests comes through here.
///
/// With an `embedder`, the chunks' missing vectors are stored first (see
/// [`semantic::store_vectors`]), also when the content is unchanged, so
/// that ingesting a library again fills in what it lacks; if the endpoint
/// fails, nothing is recorded.
///
/// # Errors
/// [`IngestError`]: the file's faults, the embeddings endpoint's
/// ([`IngestError::Embeddings`]), or the store's.
pub async fn ingest_with(
    store: &EventStore,
    embedder: Option<&embeddings::Embedder>,
    source: &NewSource<'_>,
    metadata: &Metadata,
) -> Result<IngestOutcome, IngestError> {
    let content = prepare(source).await?;
    if let Some(embedder) = embedder {
        let texts: Vec<&str> = content.chunks.iter().map(|c| c.text.as_str()).collect();
        semantic::store_vectors(store.pool(), embedder, &texts)
            .await
            .map_err(|e| match e {
                semantic::SemanticError::Embeddings(e) => IngestError::Embeddings(e),
                semantic::SemanticError::Database(e) => IngestError::Store(StoreError::Pool(e)),
            })?;
    }
    let id = source_id(source.user_id, &content.path);
    let chunks = content.chunks.len();
    loop {
        let state = load(store, id).await?;
        let Some(event) = decide_ingest(&state, id, content.clone()) else {
            return Ok(IngestOutcome::Unchanged {
                id,
                version: state.version,
            });
        };
        let new = NewEvent::from(&event);
        // The chunks' search vectors are computed here, by the appending
        // statement, on this connection, rather than by the single
        // projector (which takes them from `chunk_search_vectors`).
        match store
            .append_and(
                id,
                state.stream_version,
                &[new],
                metadata,
                Some(&SEARCH_VECTORS),
            )
            .await
        {
            Ok(appended) => {
                let version = state.version + 1;
                return Ok(match event {
                    SourceEvent::SourceUpdated(_) => IngestOutcome::Updated {
                        id,
                        version,
                        chunks,
                        appended,
                    },
                    _ => IngestOutcome::Added {
                        id,
                        version,
                        chunks,
                        appended,
                    },
                });
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Removes the document `id` of `user_id` (soft delete). `Ok(None)` when no
/// such document is in that user's library.
///
/// # Errors
/// Database errors.
pub async fn remove(
    store: &EventStore,
    user_id: Uuid,
    id: Uuid,
    path: &str,
    metadata: &Metadata,
) -> Result<Option<Appended>, StoreError> {
    loop {
        let state = load(store, id).await?;
        let Some(event) = decide_remove(&state, user_id, path) else {
            return Ok(None);
        };
        let new = NewEvent::from(&event);
        match store
            .append(id, state.stream_version, &[new], metadata)
            .await
        {
            Ok(a) => return Ok(Some(a)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_checked() {
        assert_eq!(parse_path("/a//b/c.md").unwrap(), "a/b/c.md");
        assert!(parse_path("a/../b.md").is_err());
        assert!(parse_path("").is_err());
        assert!(parse_path("a/\u{0}b").is_err());
        assert_eq!(parse_prefix("micro/").unwrap(), "micro/");
        assert_eq!(parse_prefix("").unwrap(), "");
        assert_eq!(parse_prefix("  micro/ ").unwrap(), "micro/");
        // Control characters are refused even where trimming would drop them.
        assert!(parse_prefix("\u{c}\u{ad}").is_err());
        assert!(parse_prefix("micro/\t").is_err());
        assert!(parse_path("\na.md").is_err());
        // A filter takes any other text as it is.
        assert_eq!(parse_prefix_filter(" /bio//cells/ ").unwrap(), "bio/cells/");
        assert_eq!(parse_prefix_filter(".").unwrap(), ".");
        assert_eq!(parse_prefix_filter("a/../b").unwrap(), "a/../b");
        assert!(parse_prefix_filter("bio/\t").is_err());
    }

    #[actix_rt::test]
    async fn unsupported_and_oversized_files_are_refused_before_anything_is_stored() {
        let new = |path, bytes| NewSource {
            user_id: Uuid::nil(),
            path,
            bytes,
            media_type: None,
            language: None,
            title: None,
        };
        assert!(matches!(
            prepare(&new("a.odt", b"x")).await,
            Err(IngestError::Unsupported(t)) if t == ".odt"
        ));
        let big = vec![b'a'; MAX_SOURCE_BYTES + 1];
        assert!(matches!(
            prepare(&new("a.txt", &big)).await,
            Err(IngestError::TooLarge { .. })
        ));
        assert!(matches!(
            prepare(&new("a.txt", b"   \n")).await,
            Err(IngestError::Empty)
        ));
        assert!(matches!(
            prepare(&new("a.txt", &[0xff, 0xfe, 0x00])).await,
            Err(IngestError::Unreadable(_))
        ));
    }

    #[actix_rt::test]
    async fn markdown_is_chunked_with_heading_paths_and_a_detected_language() {
        let md = "# Zellen\n\n## Membran\n\nDie Zellmembran besteht aus einer Lipiddoppelschicht, \
                  die den Inhalt der Zelle von ihrer Umgebung trennt und den Austausch von \
                  Stoffen regelt.\n";
        let c = prepare(&NewSource {
            user_id: Uuid::nil(),
            path: "bio/zellen.md",
            bytes: md.as_bytes(),
            media_type: None,
            language: None,
            title: None,
        })
        .await
        .unwrap();
        assert_eq!(c.title, "Zellen");
        assert_eq!(c.language, "de");
        assert_eq!(c.media_type, "text/markdown");
        assert_eq!(c.chunks[0].heading_path, ["Zellen", "Membran"]);
        assert!(c.content_hash.starts_with("sha256:"));
    }
}
