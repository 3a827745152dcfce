//! The statuses the read tables store as text: a course's
//! ([`CourseStatus`], the domain's) and a lesson's ([`LessonStatus`]), with
//! their PostgreSQL conversions (here, so that the domain stays free of
//! I/O crates).

use serde::Serialize;

use crate::domain::CourseStatus;
use crate::projections::text_sql::text_sql;

/// Whether a lesson's content is there yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum LessonStatus {
    /// Planned by the outline, not generated yet.
    Pending,
    Generated,
}

impl LessonStatus {
    /// The stored and displayed name (`PENDING`, `GENERATED`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Generated => "GENERATED",
        }
    }
}

impl std::fmt::Display for LessonStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`LessonStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lesson status {0:?}")]
pub(crate) struct UnknownLessonStatus(pub String);

impl std::str::FromStr for LessonStatus {
    type Err = UnknownLessonStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Pending, Self::Generated]
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownLessonStatus(s.to_owned()))
    }
}

text_sql!(CourseStatus);
text_sql!(LessonStatus);
text_sql!(crate::domain::Difficulty);

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_postgres::types::{FromSql, ToSql, Type};

    use super::*;

    fn round_trip<T>(value: T) -> T
    where
        T: ToSql + for<'a> FromSql<'a>,
    {
        let mut buf = BytesMut::new();
        value.to_sql_checked(&Type::TEXT, &mut buf).unwrap();
        T::from_sql(&Type::TEXT, &buf).unwrap()
    }

    #[test]
    fn statuses_are_stored_as_their_names() {
        for status in CourseStatus::ALL {
            let mut buf = BytesMut::new();
            status.to_sql_checked(&Type::TEXT, &mut buf).unwrap();
            assert_eq!(&buf[..], status.as_str().as_bytes());
            assert_eq!(round_trip(status), status);
        }
        for status in [LessonStatus::Pending, LessonStatus::Generated] {
            assert_eq!(round_trip(status), status);
            assert_eq!(status.to_string().parse::<LessonStatus>(), Ok(status));
        }
    }

    #[test]
    fn an_unknown_stored_status_is_an_error_not_a_guess() {
        assert!(CourseStatus::from_sql(&Type::TEXT, b"DONE").is_err());
        assert!(LessonStatus::from_sql(&Type::TEXT, b"pending").is_err());
        assert!(!<CourseStatus as ToSql>::accepts(&Type::INT4));
    }
}
