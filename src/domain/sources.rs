//! The source library: one stream per document of a user's library.
//!
//! A document's stream holds `SourceAdded` (first version, or added again
//! after a removal), `SourceUpdated` (changed content at the same path: a new
//! version) and `SourceRemoved` (a soft delete). The chunk text is in the
//! events themselves, so the log alone rebuilds the library, and the chunks a
//! course cited stay readable in the version it cited (see DESIGN.md,
//! "sources").
//!
//! [`decide_ingest`] is pure: the same content at the same path records
//! nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::UpcastError;

/// Namespace of document ids (fixed: changing it would re-key every document).
const SOURCE_NAMESPACE: Uuid = Uuid::from_u128(0x0c5d_7e21_44a9_4b6f_9e30_2d8f_61a4_c7e5);

/// The stream id of the document at `path` in `user_id`'s library: UUIDv5 of
/// both, so the same path is always the same stream.
pub fn source_id(user_id: Uuid, path: &str) -> Uuid {
    let mut name = Vec::with_capacity(16 + path.len());
    name.extend_from_slice(user_id.as_bytes());
    name.extend_from_slice(path.as_bytes());
    Uuid::new_v5(&SOURCE_NAMESPACE, &name)
}

/// The id of chunk `ordinal` of `version` of document `source_id`.
pub fn chunk_id(source_id: Uuid, version: u32, ordinal: u32) -> Uuid {
    Uuid::new_v5(&source_id, format!("{version}:{ordinal}").as_bytes())
}

/// One passage of a document, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceChunk {
    /// [`chunk_id`] of the document, version and ordinal.
    pub id: Uuid,
    /// 0, 1, 2, ... in document order.
    pub ordinal: u32,
    /// The headings above the passage, outermost first (Markdown, HTML).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heading_path: Vec<String>,
    /// The 1-based page (PDF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    pub text: String,
}

/// A document's content as one version records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceContent {
    pub user_id: Uuid,
    /// Library path, e.g. `microbiology/cells.pdf`.
    pub path: String,
    pub title: String,
    pub media_type: String,
    /// Size in bytes of the file as given.
    pub size: u64,
    /// `sha256:<hex>` of the file as given.
    pub content_hash: String,
    /// Language code (`en`, `de`, ...): picks the text search configuration.
    pub language: String,
    pub chunks: Vec<SourceChunk>,
}

/// A document's first version, or its first after a removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAdded {
    /// 1 for a new document; the next number when added again after a removal.
    pub version: u32,
    #[serde(flatten)]
    pub content: SourceContent,
}

/// Changed content at the same path: a new version. The old version's
/// chunks are no longer retrieved; courses citing them keep their ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceUpdated {
    pub version: u32,
    #[serde(flatten)]
    pub content: SourceContent,
}

/// The document left the library (soft delete: its versions stay in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRemoved {
    pub user_id: Uuid,
    pub path: String,
    /// The version that was current.
    pub version: u32,
}

/// Any event of a document stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    SourceAdded(SourceAdded),
    SourceUpdated(SourceUpdated),
    SourceRemoved(SourceRemoved),
}

impl SourceEvent {
    /// The `event_type`s of a document stream's events.
    pub const TYPES: [&'static str; 3] = ["SourceAdded", "SourceUpdated", "SourceRemoved"];

    /// Whether `event_type` is one of a document stream's (course readers skip them).
    pub fn is_source_type(event_type: &str) -> bool {
        Self::TYPES.contains(&event_type)
    }

    /// The stored `event_type` string.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::SourceAdded(_) => "SourceAdded",
            Self::SourceUpdated(_) => "SourceUpdated",
            Self::SourceRemoved(_) => "SourceRemoved",
        }
    }

    /// The payload schema version this build writes.
    pub fn event_version(&self) -> i16 {
        1
    }

    /// The payload as stored.
    pub fn payload(&self) -> Value {
        match self {
            Self::SourceAdded(e) => serde_json::to_value(e),
            Self::SourceUpdated(e) => serde_json::to_value(e),
            Self::SourceRemoved(e) => serde_json::to_value(e),
        }
        .expect("source events serialize to JSON")
    }

    /// Reads a stored event.
    ///
    /// # Errors
    /// Unknown types, versions newer than this build, payloads that do not decode.
    pub fn from_stored(
        event_type: &str,
        version: i16,
        payload: Value,
    ) -> Result<Self, UpcastError> {
        if !Self::is_source_type(event_type) {
            return Err(UpcastError::UnknownType(event_type.to_owned()));
        }
        if version > 1 {
            return Err(UpcastError::FutureVersion {
                event_type: event_type.to_owned(),
                version,
            });
        }
        let err = |source| UpcastError::Payload {
            event_type: event_type.to_owned(),
            version,
            source,
        };
        Ok(match event_type {
            "SourceAdded" => Self::SourceAdded(serde_json::from_value(payload).map_err(err)?),
            "SourceUpdated" => Self::SourceUpdated(serde_json::from_value(payload).map_err(err)?),
            _ => Self::SourceRemoved(serde_json::from_value(payload).map_err(err)?),
        })
    }

    /// The content a version records (none for a removal).
    pub fn content(&self) -> Option<(u32, &SourceContent)> {
        match self {
            Self::SourceAdded(e) => Some((e.version, &e.content)),
            Self::SourceUpdated(e) => Some((e.version, &e.content)),
            Self::SourceRemoved(_) => None,
        }
    }
}

/// A document as folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceState {
    /// Events in the stream (the expected version of the next append).
    pub stream_version: u32,
    /// The last version recorded (0: none).
    pub version: u32,
    pub content_hash: Option<String>,
    pub removed: bool,
}

impl SourceState {
    /// Whether the document is in the library now.
    pub fn is_live(&self) -> bool {
        self.version > 0 && !self.removed
    }
}

/// Folds one event into a document's state.
pub fn evolve_source(mut state: SourceState, event: &SourceEvent) -> SourceState {
    state.stream_version += 1;
    match event {
        SourceEvent::SourceAdded(SourceAdded { version, content })
        | SourceEvent::SourceUpdated(SourceUpdated { version, content }) => {
            state.version = *version;
            state.content_hash = Some(content.content_hash.clone());
            state.removed = false;
        }
        SourceEvent::SourceRemoved(_) => state.removed = true,
    }
    state
}

/// What ingesting a file into a document's stream records: `None` when the
/// same content is already the current version. Chunk ids are assigned here,
/// since they name the version.
pub fn decide_ingest(
    state: &SourceState,
    source_id: Uuid,
    mut content: SourceContent,
) -> Option<SourceEvent> {
    if state.is_live() && state.content_hash.as_deref() == Some(content.content_hash.as_str()) {
        return None;
    }
    let version = state.version + 1;
    for (i, chunk) in content.chunks.iter_mut().enumerate() {
        let ordinal = u32::try_from(i).expect("chunk count fits in u32");
        chunk.ordinal = ordinal;
        chunk.id = chunk_id(source_id, version, ordinal);
    }
    Some(if state.is_live() {
        SourceEvent::SourceUpdated(SourceUpdated { version, content })
    } else {
        SourceEvent::SourceAdded(SourceAdded { version, content })
    })
}

/// The removal of a live document; `None` when it is not in the library.
pub fn decide_remove(state: &SourceState, user_id: Uuid, path: &str) -> Option<SourceEvent> {
    state.is_live().then(|| {
        SourceEvent::SourceRemoved(SourceRemoved {
            user_id,
            path: path.to_owned(),
            version: state.version,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(hash: &str) -> SourceContent {
        SourceContent {
            user_id: Uuid::nil(),
            path: "a/b.md".into(),
            title: "B".into(),
            media_type: "text/markdown".into(),
            size: 3,
            content_hash: hash.into(),
            language: "en".into(),
            chunks: vec![SourceChunk {
                id: Uuid::nil(),
                ordinal: 9,
                heading_path: vec![],
                page: None,
                text: "abc".into(),
            }],
        }
    }

    fn fold(events: &[SourceEvent]) -> SourceState {
        events.iter().fold(SourceState::default(), evolve_source)
    }

    #[test]
    fn first_ingest_adds_version_one_with_chunk_ids() {
        let id = source_id(Uuid::nil(), "a/b.md");
        let Some(SourceEvent::SourceAdded(e)) = decide_ingest(&fold(&[]), id, content("h1")) else {
            panic!("expected SourceAdded");
        };
        assert_eq!(e.version, 1);
        assert_eq!(e.content.chunks[0].ordinal, 0);
        assert_eq!(e.content.chunks[0].id, chunk_id(id, 1, 0));
    }

    #[test]
    fn same_content_records_nothing_and_changed_content_is_a_new_version() {
        let id = source_id(Uuid::nil(), "a/b.md");
        let added = decide_ingest(&fold(&[]), id, content("h1")).unwrap();
        let state = fold(std::slice::from_ref(&added));
        assert_eq!(decide_ingest(&state, id, content("h1")), None);
        let Some(SourceEvent::SourceUpdated(u)) = decide_ingest(&state, id, content("h2")) else {
            panic!("expected SourceUpdated");
        };
        assert_eq!(u.version, 2);
        assert_ne!(u.content.chunks[0].id, chunk_id(id, 1, 0));
    }

    #[test]
    fn removed_document_is_added_again_as_the_next_version() {
        let id = source_id(Uuid::nil(), "a/b.md");
        let added = decide_ingest(&fold(&[]), id, content("h1")).unwrap();
        let removed =
            decide_remove(&fold(std::slice::from_ref(&added)), Uuid::nil(), "a/b.md").unwrap();
        let state = fold(&[added, removed]);
        assert!(!state.is_live());
        assert_eq!(decide_remove(&state, Uuid::nil(), "a/b.md"), None);
        let Some(SourceEvent::SourceAdded(e)) = decide_ingest(&state, id, content("h1")) else {
            panic!("expected SourceAdded");
        };
        assert_eq!(e.version, 2);
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let e = decide_ingest(&fold(&[]), Uuid::nil(), content("h")).unwrap();
        let back = SourceEvent::from_stored(e.event_type(), 1, e.payload()).unwrap();
        assert_eq!(back, e);
    }
}
