//! `/api/v1/courses`: request a course, list and search them, read one with
//! its lessons, its history and its live progress; soft delete, restore and
//! retry.
//!
//! - [`dto`]: request bodies, query parameters and JSON views.
//! - [`handlers`]: the endpoints (queries come from the read model,
//!   `projections::courses::queries`).
//! - [`export`]: the course as a zip download (JSON, Markdown, SCORM, Common Cartridge).
//! - [`elements`]: a lesson's interactive elements.
//! - [`metadata`]: `PATCH`, the metadata edit.
//! - [`subtitles`]: more languages, and a lesson's subtitles as JSON, WebVTT, SRT.
//! - [`progress`]: the Server-Sent Events stream of a course's progress.
//! - [`watch`]: the one watcher of the log those streams share.

pub(crate) mod dto;
pub(crate) mod elements;
pub(crate) mod export;
pub(crate) mod handlers;
pub(crate) mod metadata;
pub(crate) mod progress;
pub(crate) mod subtitles;
pub(crate) mod watch;

pub(crate) use dto::{
    CoursePage, CourseView, EventView, LessonSummary, LessonView, ListParams, Tokens,
};
pub(crate) use progress::Progress;
