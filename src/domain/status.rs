//! A course's status: where it is in its life, with the names the read
//! tables store and the API shows.

use serde::Serialize;

/// Where a course is in its life. Its names (`QUEUED`, ...) are what the
/// read tables store and the API shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CourseStatus {
    Queued,
    Generating,
    Ready,
    Failed,
}

impl CourseStatus {
    /// Every status, in the order of a course's life.
    pub(crate) const ALL: [Self; 4] = [Self::Queued, Self::Generating, Self::Ready, Self::Failed];

    /// The stored and displayed name (`QUEUED`, ...).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Generating => "GENERATING",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
        }
    }

    /// Whether generation is over (READY or FAILED): nothing changes any
    /// more until a retry.
    pub(crate) fn is_finished(self) -> bool {
        matches!(self, Self::Ready | Self::Failed)
    }
}

impl std::fmt::Display for CourseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`CourseStatus`]; it says which names are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {given:?}: use {}", one_of(&CourseStatus::ALL.map(CourseStatus::as_str)))]
pub struct UnknownStatus {
    pub given: String,
}

/// `a, b, c or d`: the names an error message offers.
pub(crate) fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

impl std::str::FromStr for CourseStatus {
    type Err = UnknownStatus;

    /// Any ASCII case, as the API's `status` filter has always accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn a_status_parses_from_its_name_in_any_case() {
        for status in CourseStatus::ALL {
            assert_eq!(status.to_string().parse::<CourseStatus>(), Ok(status));
            assert_eq!(
                status.as_str().to_lowercase().parse::<CourseStatus>(),
                Ok(status)
            );
        }
    }

    #[test]
    fn an_unknown_status_names_the_known_ones() {
        let err = "DONE".parse::<CourseStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown status \"DONE\": use QUEUED, GENERATING, READY or FAILED"
        );
    }
}
