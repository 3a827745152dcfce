//! The pure core: course ids, events, commands and the course state machine.
//!
//! Nothing here performs I/O. `decide` checks a command against the state folded
//! from a course's events and returns the new events (or why not); `evolve`
//! folds one event into the state. The LLM is called outside, and its answer
//! enters as command data.

pub mod citations;
mod course;
pub mod elements;
mod events;
mod ids;
pub mod metadata;
mod request;
pub mod sources;
mod status;
pub mod subtitles;
#[cfg(test)]
mod tests;

pub(crate) use course::NextStep;
pub use course::{decide, evolve, Command, Course, DomainError};
pub use elements::{ElementBody, InteractiveElement};
pub use events::{
    Citation, CourseCompleted, CourseDeleted, CourseEvent, CourseFailed, CourseMetadataChanged,
    CourseRequested, CourseRestored, GenerationRetried, GenerationStarted, LessonGenerated,
    LessonPlan, LessonSection, OutlineGenerated, QuizQuestion, Retrieved, SourceRef,
    SubtitlesCompleted, SubtitlesFailed, SubtitlesGenerated, SubtitlesRequested, TokenUsage,
    UpcastError,
};
pub use ids::course_id;
pub use metadata::{CourseMetadata, Difficulty, MetadataChange, RawMetadataChange};
pub use request::{
    parse_languages, CourseRequest, RawCourseRequest, Reason, ValidationError, DEFAULT_NUM_LESSONS,
};
pub(crate) use status::one_of;
pub use status::{CourseStatus, UnknownStatus};
