//! The AMQP wire formats (the README's RabbitMQ section): the request body and the reply.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{CourseRequest, RawCourseRequest};

/// Largest request body looked at; anything bigger is refused unread
/// (a real request is well under 1 KiB).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `request_id` echoed back in an error reply.
const MAX_ECHOED_ID: usize = 200;

/// Why a message carrying a NUL character is refused.
const NUL_REFUSAL: &str = "message contains a NUL character (U+0000), which is never accepted";

/// Checks the message properties that are recorded with the request
/// (`reply_to`, `correlation_id`, kept in the event's metadata).
///
/// # Errors
/// The refusal's reason when one holds a NUL character.
pub(crate) fn check_properties(
    reply_to: Option<&str>,
    correlation_id: Option<&str>,
) -> Result<(), String> {
    for (name, value) in [("reply_to", reply_to), ("correlation_id", correlation_id)] {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(format!("{name}: {NUL_REFUSAL}"));
        }
    }
    Ok(())
}

/// A property worth echoing in a reply: one with no NUL character (a reply
/// to a refused message with a broken `reply_to` goes to the default queue).
pub(crate) fn usable_property(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.contains('\0')).map(str::to_owned)
}

/// Status of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyStatus {
    /// The request is recorded (`CourseRequested`).
    Accepted,
    /// The course is READY.
    Success,
    /// The request was refused, or generation failed.
    Error,
}

/// A reply, in the predecessor's format; fields that do not apply are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id as sent (a string, even if it is not a valid UUID).
    pub request_id: Option<String>,
    pub status: ReplyStatus,
    pub course_id: Option<Uuid>,
    pub course_title: Option<String>,
    pub total_lessons: Option<u32>,
    pub error: Option<String>,
    /// When the fact replied about was recorded (RFC 3339, UTC), so a reply
    /// sent twice after a crash is identical.
    pub timestamp: String,
}

impl Reply {
    /// A reply with only a status and request id.
    pub(crate) fn new(request_id: Option<String>, status: ReplyStatus, at: DateTime<Utc>) -> Self {
        Self {
            request_id,
            status,
            course_id: None,
            course_title: None,
            total_lessons: None,
            error: None,
            timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }

    /// The JSON body.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("replies serialize")
    }
}

/// Why a message was refused, and the request id to answer, if readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub reason: String,
    pub request_id: Option<String>,
}

/// Reads and validates a request body. Never panics, whatever the bytes.
///
/// # Errors
/// A [`Refusal`] naming the first problem: too large, not UTF-8, not JSON
/// (including nesting deeper than serde_json's limit of 128), not an object,
/// a field of the wrong type or unknown, or a broken rule of
/// [`CourseRequest::parse`]; with the `request_id` when [`readable_request_id`]
/// finds one, so that the sender hears why.
pub(crate) fn parse_request(body: &[u8]) -> Result<CourseRequest, Refusal> {
    read_request(body).map_err(|reason| Refusal {
        reason,
        request_id: readable_request_id(body),
    })
}

fn read_request(body: &[u8]) -> Result<CourseRequest, String> {
    if body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "message body is {} bytes; at most {MAX_BODY_BYTES} are accepted",
            body.len()
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("message body is empty".into());
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("message body is not UTF-8: {e}"))?;
    if crate::ingress::nul::in_json(body) {
        // Whatever field holds it, PostgreSQL could not store it.
        return Err(NUL_REFUSAL.into());
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("message body is not valid JSON: {e}"))?;
    // The same reading and rules, hence the same messages, as HTTP's.
    RawCourseRequest::from_json(value)
        .and_then(CourseRequest::parse)
        .map_err(|e| e.to_string())
}

/// Largest body searched for a `request_id` to answer. Far above
/// [`MAX_BODY_BYTES`], so that a message refused for its size is still
/// answered; the search allocates nothing but the id (every other value is
/// skipped as [`IgnoredAny`]), so it costs one linear scan of the bytes the
/// broker already delivered.
const MAX_PROBED_BYTES: usize = 16 * 1024 * 1024;

/// The `request_id` of a body, if it is a JSON object whose `request_id` is a
/// non-blank string (trimmed, at most [`MAX_ECHOED_ID`] characters), whatever
/// else the body holds; nothing for anything else, bodies over
/// [`MAX_PROBED_BYTES`] included. No course is built from it.
fn readable_request_id(body: &[u8]) -> Option<String> {
    /// Only `request_id`; serde skips every other field unread.
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "string_or_skip")]
        request_id: Option<String>,
    }
    if body.len() > MAX_PROBED_BYTES {
        return None;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    probe
        .request_id
        .map(|id| id.trim().chars().take(MAX_ECHOED_ID).collect::<String>())
        .filter(|id| !id.is_empty())
}

/// A string as itself; any other JSON value skipped (as [`IgnoredAny`]) and
/// read as `None`.
fn string_or_skip<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct StringOrSkip;

    impl<'de> Visitor<'de> for StringOrSkip {
        type Value = Option<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            // At most what is echoed (plus room for trimming), however long.
            Ok(Some(v.chars().take(4 * MAX_ECHOED_ID).collect()))
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }

    deserializer.deserialize_any(StringOrSkip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "5b0f7c3e-3a4b-4c1d-8e2f-9a0b1c2d3e4f";
    const REQUEST: &str = "0d3c5e7a-1b2c-4d5e-8f90-a1b2c3d4e5f6";

    #[test]
    fn a_valid_request_parses() {
        let body = format!(
            r#"{{"request_id":"{REQUEST}","user_id":"{USER}","topic":"Cells","num_lessons":3}}"#
        );
        let request = parse_request(body.as_bytes()).unwrap();
        assert_eq!(request.num_lessons, 3);
        assert_eq!(request.topic, "Cells");
    }

    #[test]
    fn any_byte_string_is_refused_with_a_reason_not_a_panic() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let huge = vec![b'a'; MAX_BODY_BYTES + 1];
        let bodies: Vec<&[u8]> = vec![
            b"",
            b"   ",
            &[0xff, 0xfe, 0x00],
            b"{",
            b"[1,2,3]",
            b"null",
            b"\"text\"",
            b"42",
            deep.as_bytes(),
            &huge,
            br#"{"request_id": 5}"#,
            br#"{"num_lessons": "four"}"#,
        ];
        for body in bodies {
            let refusal = parse_request(body).unwrap_err();
            assert!(!refusal.reason.is_empty());
        }
    }

    #[test]
    fn a_refusal_keeps_a_readable_request_id() {
        let body = format!(r#"{{"request_id":"{REQUEST}","topic":"Cells"}}"#);
        let refusal = parse_request(body.as_bytes()).unwrap_err();
        assert_eq!(refusal.request_id.as_deref(), Some(REQUEST));
        assert!(refusal.reason.contains("user_id"), "{}", refusal.reason);

        let body = format!(r#"{{"request_id":"{REQUEST}","user_id":"{USER}","topic":7}}"#);
        let refusal = parse_request(body.as_bytes()).unwrap_err();
        assert_eq!(refusal.request_id.as_deref(), Some(REQUEST));
    }

    #[test]
    fn a_body_over_the_limit_is_refused_but_keeps_its_request_id() {
        let topic = "x".repeat(1024 * 1024);
        let body = format!(
            r#"{{"user_id":"{USER}","topic":"{topic}","nested":[{{"a":[1,2]}}],"request_id":"{REQUEST}"}}"#
        );
        let refusal = parse_request(body.as_bytes()).unwrap_err();
        assert!(refusal.reason.contains("bytes"), "{}", refusal.reason);
        assert_eq!(refusal.request_id.as_deref(), Some(REQUEST));
    }

    #[test]
    fn only_a_string_request_id_is_echoed_and_only_its_start() {
        let cases: Vec<(String, Option<String>)> = vec![
            (r#"{"request_id": [1, {"a": 2}], "topic": 1}"#.into(), None),
            (r#"{"request_id": {"id": "x"}}"#.into(), None),
            (r#"{"request_id": null}"#.into(), None),
            (r#"{"request_id": "  "}"#.into(), None),
            (r#"[{"request_id": "x"}]"#.into(), None),
            (r#"{"request_id": "x", "request_id": "y"}"#.into(), None),
            (
                format!(r#"{{"request_id": "{}"}}"#, "i".repeat(10_000)),
                Some("i".repeat(MAX_ECHOED_ID)),
            ),
            (
                r#"{"request_id": " r1 ", "topic": 7}"#.into(),
                Some("r1".into()),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_request(body.as_bytes()).unwrap_err().request_id,
                want,
                "{body}"
            );
        }
        let mut not_utf8 = br#"{"request_id": "r2", "topic": ""#.to_vec();
        not_utf8.extend([0xff, 0xfe, b'"', b'}']);
        let refusal = parse_request(&not_utf8).unwrap_err();
        assert!(refusal.reason.contains("UTF-8"), "{}", refusal.reason);
        assert_eq!(refusal.request_id.as_deref(), Some("r2"));
        let huge = format!(
            r#"{{"request_id":"r","t":"{}"}}"#,
            "x".repeat(MAX_PROBED_BYTES)
        );
        assert_eq!(parse_request(huge.as_bytes()).unwrap_err().request_id, None);
    }

    #[test]
    fn unknown_fields_are_refused_as_over_http() {
        let body = format!(
            r#"{{"request_id":"{REQUEST}","user_id":"{USER}","topic":"Cells","owner":"me"}}"#
        );
        let refusal = parse_request(body.as_bytes()).unwrap_err();
        assert!(
            refusal.reason.contains("unknown field `owner`"),
            "{}",
            refusal.reason
        );
        assert_eq!(refusal.request_id.as_deref(), Some(REQUEST));
    }

    #[test]
    fn replies_carry_every_field_even_when_null() {
        let reply = Reply::new(Some("r".into()), ReplyStatus::Accepted, Utc::now());
        let value: Value = serde_json::from_slice(&reply.to_bytes()).unwrap();
        for key in [
            "request_id",
            "status",
            "course_id",
            "course_title",
            "total_lessons",
            "error",
            "timestamp",
        ] {
            assert!(value.get(key).is_some(), "{key}");
        }
        assert_eq!(value["status"], "accepted");
    }
}
