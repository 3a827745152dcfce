//! Slugs: URL-friendly, unique, derived from the title (from the topic until
//! an outline names the course). Courses sharing a base are numbered in the
//! order they took it, by log position (as `coursegen_slug_base` and the
//! recount do in SQL), so batch boundaries do not matter and a replay gives
//! the slugs the live runner gave.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use super::queries::CourseRecord;

/// A base for slugs, as `coursegen_slug_base` in SQL computes it: lower-case
/// ASCII letters and digits joined by single dashes, at most 80 characters,
/// `course` when empty, a trailing `-<digits>` joined to the word before.
pub fn slug_base(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    let mut dash = false;
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if dash && !slug.is_empty() {
                slug.push('-');
            }
            dash = false;
            slug.push(c);
        } else {
            dash = true;
        }
    }
    slug.truncate(80);
    let mut slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        slug = "course".into();
    }
    if let Some(i) = slug.rfind('-') {
        let tail = &slug[i + 1..];
        if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            slug.remove(i);
        }
    }
    slug
}

/// A slug: the base for the first course numbered by it, `<base>-<n>` for
/// the n-th (as the recount numbers them).
fn numbered_slug(base: &str, n: usize) -> String {
    if n == 1 {
        base.to_owned()
    } else {
        // Bases are ASCII: 72 bytes are 72 characters.
        format!("{}-{n}", &base[..base.len().min(72)])
    }
}

/// A course of a base, in numbering order: the position that took the
/// base (transaction id, global position), the course, and its stored slug
/// when it is not in the batch.
pub(super) type SlugHolder = (i64, i64, Uuid, Option<String>);

/// The bases to number again: those a course of the batch entered or left
/// (`stored` holds the bases as loaded, before the batch). Sorted.
pub(super) fn touched_bases(
    courses: &HashMap<Uuid, CourseRecord>,
    stored: &HashMap<Uuid, String>,
    dirty: &BTreeSet<Uuid>,
) -> Vec<String> {
    let mut bases: BTreeSet<String> = BTreeSet::new();
    for id in dirty {
        let c = &courses[id];
        let old = stored.get(id);
        if old != Some(&c.slug_base) {
            bases.insert(c.slug_base.clone());
            if let Some(old) = old {
                bases.insert(old.clone());
            }
        }
    }
    bases.into_iter().collect()
}

/// Numbers the courses of `bases` 1, 2, ... in the order they took their
/// base. `others` are the stored courses of those bases outside the batch;
/// the batch's own are taken from `courses`. Sets `slug` on the batch's
/// rows and returns the other courses whose slug changes (when a course
/// leaves a base, the ones after it move up).
pub(super) fn number(
    bases: &[String],
    others: Vec<(String, SlugHolder)>,
    courses: &mut HashMap<Uuid, CourseRecord>,
    dirty: &BTreeSet<Uuid>,
) -> Vec<(Uuid, String)> {
    let mut members: HashMap<String, Vec<SlugHolder>> = HashMap::new();
    for (base, holder) in others {
        members.entry(base).or_default().push(holder);
    }
    for id in dirty {
        let c = &courses[id];
        if bases.binary_search(&c.slug_base).is_ok() {
            members.entry(c.slug_base.clone()).or_default().push((
                c.slug_position.transaction_id,
                c.slug_position.global_position,
                c.id,
                None,
            ));
        }
    }
    let mut renamed = Vec::new();
    for (base, mut list) in members {
        list.sort_unstable();
        for (i, (_, _, id, stored)) in list.into_iter().enumerate() {
            let slug = numbered_slug(&base, i + 1);
            match stored {
                None => courses.get_mut(&id).expect("a batch row").slug = slug,
                Some(old) if old != slug => renamed.push((id, slug)),
                Some(_) => {}
            }
        }
    }
    renamed
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::CourseStatus;
    use crate::store::Position;

    /// A course of the batch that took `base` at global position `at`.
    fn course(id: u128, base: &str, at: i64) -> CourseRecord {
        CourseRecord {
            id: Uuid::from_u128(id),
            user_id: Uuid::nil(),
            request_id: Uuid::nil(),
            title: None,
            description: None,
            slug: String::new(),
            slug_base: base.into(),
            slug_position: Position {
                transaction_id: at,
                global_position: at,
            },
            topic: base.into(),
            grade_level: None,
            language: "en".into(),
            source_filter: None,
            status: CourseStatus::Queued,
            error_message: None,
            total_lessons: 1,
            lessons_generated: 0,
            sources: Vec::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            attempt: 0,
            model: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            generated_at: None,
            deleted_at: None,
            author: None,
            tags: Vec::new(),
            difficulty: None,
            prerequisites: Vec::new(),
            learning_outcomes: Vec::new(),
            estimated_minutes: 0,
            subtitle_languages: Vec::new(),
            subtitles_generated: 0,
        }
    }

    #[test]
    fn a_base_entered_and_a_base_left_are_numbered_again() {
        let mut courses = HashMap::from([
            (Uuid::from_u128(1), course(1, "algebra", 5)),
            (Uuid::from_u128(2), course(2, "volcanoes", 6)),
        ]);
        courses.get_mut(&Uuid::from_u128(2)).unwrap().slug_base = "lava".into();
        let stored = HashMap::from([
            (Uuid::from_u128(2), "volcanoes".to_owned()),
            (Uuid::from_u128(3), "castles".to_owned()),
        ]);
        let dirty = BTreeSet::from([Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert_eq!(
            touched_bases(&courses, &stored, &dirty),
            ["algebra", "lava", "volcanoes"]
        );
        let unchanged = BTreeSet::from([Uuid::from_u128(2)]);
        courses.get_mut(&Uuid::from_u128(2)).unwrap().slug_base = "volcanoes".into();
        assert!(touched_bases(&courses, &stored, &unchanged).is_empty());
    }

    #[test]
    fn courses_of_a_base_are_numbered_in_the_order_they_took_it() {
        let new = Uuid::from_u128(1);
        let mut courses = HashMap::from([(new, course(1, "algebra", 5))]);
        let dirty = BTreeSet::from([new]);
        let bases = vec!["algebra".to_owned()];
        // Stored: one before the new course (keeps its slug), one after it
        // (was `algebra-2`, moves to `algebra-3`).
        let before = (
            Uuid::from_u128(8),
            (1, 1, Uuid::from_u128(8), Some("algebra".into())),
        );
        let after = (
            Uuid::from_u128(9),
            (9, 9, Uuid::from_u128(9), Some("algebra-2".into())),
        );
        let others = vec![
            ("algebra".to_owned(), after.1),
            ("algebra".to_owned(), before.1),
        ];
        let renamed = number(&bases, others, &mut courses, &dirty);
        assert_eq!(courses[&new].slug, "algebra-2");
        assert_eq!(renamed, vec![(after.0, "algebra-3".to_owned())]);
    }

    #[test]
    fn a_base_is_the_title_in_lower_case_words_joined_by_dashes() {
        assert_eq!(
            slug_base("Photosynthesis: How Plants Eat!"),
            "photosynthesis-how-plants-eat"
        );
        assert_eq!(slug_base("  ¿Qué?  "), "qu");
        assert_eq!(slug_base("!!!"), "course");
        assert_eq!(slug_base("Physics 101"), "physics101");
        assert_eq!(slug_base(&"a".repeat(100)).len(), 80);
    }

    #[test]
    fn the_nth_course_of_a_base_gets_its_number() {
        assert_eq!(numbered_slug("algebra", 1), "algebra");
        assert_eq!(numbered_slug("algebra", 3), "algebra-3");
        assert_eq!(
            numbered_slug(&"b".repeat(80), 2),
            format!("{}-2", "b".repeat(72))
        );
    }
}
