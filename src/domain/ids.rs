//! Deterministic identifiers.

use uuid::Uuid;

/// Namespace of course ids (a fixed random UUID: changing it would re-key every course).
const COURSE_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3c2a_9d4e_4f70_8a21_5c0e_7d93_b412);

/// The course id of a request: UUIDv5 of `(user_id, request_id)`.
///
/// A redelivered or repeated request maps to the same stream, so the event
/// store itself deduplicates it (the second `CourseRequested` would be stream
/// version 0 again and clash on the stream key).
pub fn course_id(user_id: Uuid, request_id: Uuid) -> Uuid {
    let mut name = [0u8; 32];
    name[..16].copy_from_slice(user_id.as_bytes());
    name[16..].copy_from_slice(request_id.as_bytes());
    Uuid::new_v5(&COURSE_NAMESPACE, &name)
}
