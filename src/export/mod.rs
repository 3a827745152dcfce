//! Courses as files: the backup directory and the packages learning
//! platforms import.
//!
//! - [`model`]: the whole course as every format reads it ([`load`]).
//! - [`markdown`]: `course.json`, `README.md` and `NN-<lesson-slug>.md`.
//! - [`html`]: the lesson pages (rendered by [`crate::render::markdown`]) and
//!   the SCORM runtime script.
//! - [`scorm`]: SCORM 1.2, one SCO per lesson.
//! - [`cc`]: IMS Common Cartridge 1.1 with QTI quizzes.
//! - [`archive`]: a package as a zip, written to a file or streamed.
//! - [`backup`]: the projector keeping `EXPORT_DIR` in step with the log.

pub mod archive;
pub mod backup;
pub mod cc;
pub mod html;
pub mod markdown;
pub mod model;
pub mod scorm;

pub use model::{load, CourseExport, LessonExport, LoadError};

/// One file of a package: its path inside the package and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub bytes: Vec<u8>,
}

impl PackageFile {
    /// The file `path` with `bytes`.
    pub fn new(path: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            bytes,
        }
    }
}

/// What a course is exported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// `course.json`: the whole course.
    Json,
    /// `README.md` and one file per lesson (with `course.json`: the backup).
    Markdown,
    /// A SCORM 1.2 package.
    Scorm12,
    /// An IMS Common Cartridge 1.1.
    Cc,
}

/// A name that is no [`ExportFormat`].
#[derive(Debug, thiserror::Error)]
#[error("unknown export format {0:?}: use json, markdown, scorm12 or cc")]
pub struct UnknownFormat(String);

impl ExportFormat {
    /// Every format, in the order `--help` names them.
    pub const ALL: [Self; 4] = [Self::Json, Self::Markdown, Self::Scorm12, Self::Cc];

    /// The name of `--format` and `?format=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Markdown => "markdown",
            Self::Scorm12 => "scorm12",
            Self::Cc => "cc",
        }
    }

    /// The files of `course` in this format.
    pub fn files(self, course: &CourseExport) -> Vec<PackageFile> {
        match self {
            Self::Json => vec![markdown::course_json(course)],
            Self::Markdown => markdown::files(course),
            Self::Scorm12 => scorm::files(course),
            Self::Cc => cc::files(course),
        }
    }

    /// The name of the zip of a course with `slug` (Canvas and Moodle look
    /// for `.imscc` on a cartridge).
    pub fn archive_name(self, slug: &str) -> String {
        match self {
            Self::Cc => format!("{slug}.imscc"),
            other => format!("{slug}-{}.zip", other.as_str()),
        }
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

/// What the backup directory of a course holds: `course.json`, `README.md`
/// and the lesson files.
pub fn backup_files(course: &CourseExport) -> Vec<PackageFile> {
    let mut files = vec![markdown::course_json(course)];
    files.extend(markdown::files(course));
    files
}

#[cfg(test)]
mod tests;
