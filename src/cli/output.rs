//! What the commands show on the terminal: a course's history as a timeline
//! and the progress of a course being generated. Results go to stdout,
//! progress and messages to stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use crate::domain::{Course, CourseEvent, CourseStatus};
use crate::ingress::amqp::wire::{Reply, ReplyStatus};
use crate::store::RecordedEvent;

/// Writes a course's history, oldest first: one line per event (version,
/// time, type and a summary), or with `json` one JSON object per event.
///
/// # Errors
/// Writing to `out` failed.
pub(super) fn write_events(
    out: &mut impl Write,
    events: &[RecordedEvent],
    json: bool,
) -> std::io::Result<()> {
    for e in events {
        if json {
            serde_json::to_writer(&mut *out, e)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "v{:<3} {}  {:<21} {}",
                e.stream_version,
                e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                e.event_type,
                summary(e)
            )?;
        }
    }
    Ok(())
}

/// A one-line human summary of an event's payload.
fn summary(e: &RecordedEvent) -> String {
    let Ok(event) = e.to_course_event() else {
        return format!("(unreadable payload, event_version {})", e.event_version);
    };
    match event {
        CourseEvent::CourseRequested(r) => format!(
            "{:?}, {} lessons, {}{}, user {}",
            r.topic,
            r.num_lessons,
            r.language,
            r.grade_level.map(|g| format!(", {g}")).unwrap_or_default(),
            r.user_id
        ),
        CourseEvent::GenerationStarted(s) => format!("attempt {} with {}", s.attempt, s.model),
        CourseEvent::OutlineGenerated(o) => format!(
            "{:?}, {} lessons planned, {} tokens",
            o.title,
            o.lessons.len(),
            o.usage.total_tokens
        ),
        CourseEvent::LessonGenerated(l) => format!(
            "lesson {}: {:?}, {} chars, {} quiz questions, {} tokens",
            l.number,
            l.title,
            l.content_md.chars().count(),
            l.quiz.len(),
            l.usage.total_tokens
        ),
        CourseEvent::CourseCompleted(c) => {
            format!(
                "{} lessons, {} tokens in all",
                c.total_lessons, c.usage.total_tokens
            )
        }
        CourseEvent::CourseFailed(f) => format!(
            "at {}: {}{}",
            f.step,
            f.error,
            if f.retryable { " (retryable)" } else { "" }
        ),
        CourseEvent::GenerationRetried(r) => r.reason.unwrap_or_else(|| "retry".into()),
        CourseEvent::CourseDeleted(d) => d.reason.unwrap_or_else(|| "deleted".into()),
        CourseEvent::CourseRestored(_) => "restored".into(),
        CourseEvent::CourseMetadataChanged(m) => {
            let c = m.change;
            let mut parts = Vec::new();
            let list = |l: &[String]| l.join(", ");
            if let Some(a) = c.author {
                parts.push(format!("author {a:?}"));
            }
            if let Some(t) = c.tags {
                parts.push(format!("tags [{}]", list(&t)));
            }
            if let Some(l) = c.language {
                parts.push(format!("language {l}"));
            }
            if let Some(d) = c.difficulty {
                parts.push(format!("difficulty {d}"));
            }
            if let Some(p) = c.prerequisites {
                parts.push(format!("prerequisites [{}]", list(&p)));
            }
            if let Some(o) = c.learning_outcomes {
                parts.push(format!("learning outcomes [{}]", list(&o)));
            }
            let who = e
                .metadata
                .get("user_id")
                .and_then(|u| u.as_str())
                .map(|u| format!(" by user {u}"))
                .unwrap_or_default();
            format!("{}{who}", parts.join("; "))
        }
        CourseEvent::SubtitlesGenerated(t) => format!(
            "lesson {} in {}: {} cues, {:.1} s{}",
            t.lesson,
            t.language,
            t.cues.len(),
            f64::from(t.cues.last().map_or(0, |c| c.end_ms)) / 1000.0,
            t.model
                .map(|m| format!(", translated by {m}, {} tokens", t.usage.total_tokens))
                .unwrap_or_default()
        ),
        CourseEvent::SubtitlesRequested(r) => format!("languages {}", r.languages.join(", ")),
        CourseEvent::SubtitlesFailed(f) => format!(
            "lesson {} in {}: {}{}",
            f.lesson,
            f.language,
            f.error,
            if f.retryable { " (retryable)" } else { "" }
        ),
        CourseEvent::SubtitlesCompleted(c) => {
            format!("subtitles done: {}", c.languages.join(", "))
        }
    }
}

/// The progress bar of `--wait`: lessons done out of planned, and the status.
pub(super) struct CourseProgress(ProgressBar);

impl CourseProgress {
    /// Shows the bar (on stderr), ticking while the course is generated.
    pub(super) fn start() -> Self {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} lessons  {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }

    /// Shows where `course` is; once it is READY or FAILED, finishes the bar
    /// and returns the exit code (failure, with the reason and whether a
    /// retry may help, for FAILED).
    pub(super) fn show(&self, id: Uuid, course: &Course) -> Option<ExitCode> {
        let bar = &self.0;
        bar.set_length(u64::from(course.planned_lessons()));
        bar.set_position(course.lessons_done.len() as u64);
        let title = course
            .outline
            .as_ref()
            .map(|o| o.title.as_str())
            .unwrap_or("");
        match course.status {
            Some(CourseStatus::Ready) => {
                let ready = CourseStatus::Ready;
                bar.finish_with_message(format!("{ready}: {title}"));
                eprintln!("course {id} is {ready}: {title}");
                return Some(ExitCode::SUCCESS);
            }
            Some(CourseStatus::Failed) => {
                bar.abandon_with_message(CourseStatus::Failed.to_string());
                let failure = course
                    .failure
                    .as_ref()
                    .expect("a failed course has its failure");
                eprintln!("course failed at {}: {}", failure.step, failure.error);
                if failure.retryable {
                    eprintln!("this may pass on a retry: coursegen retry {id}");
                }
                return Some(ExitCode::FAILURE);
            }
            Some(queued @ CourseStatus::Queued) => {
                bar.set_message(format!("{queued} (waiting for `coursegen serve`)"));
            }
            _ => bar.set_message(format!("{} {title}", CourseStatus::Generating)),
        }
        None
    }
}

/// The spinner of `submit --via amqp --wait`: the request's replies as they come.
pub(super) struct ReplyProgress(ProgressBar);

impl ReplyProgress {
    /// Shows the spinner (on stderr), waiting for the first reply.
    pub(super) fn start() -> Self {
        let spinner = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("valid template"),
        );
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner.set_message("published; waiting for `coursegen serve` to accept it");
        Self(spinner)
    }

    /// Shows `reply` to the request for course `id`; on `success` or `error`
    /// finishes the spinner and returns the exit code.
    pub(super) fn show(&self, id: Uuid, reply: Reply) -> Option<ExitCode> {
        let spinner = &self.0;
        match reply.status {
            ReplyStatus::Accepted => {
                spinner.set_message(format!("accepted as course {id}; generating"));
                None
            }
            ReplyStatus::Success => {
                let title = reply.course_title.unwrap_or_default();
                let lessons = reply.total_lessons.unwrap_or_default();
                let ready = CourseStatus::Ready;
                spinner.finish_with_message(format!("{ready}: {title} ({lessons} lessons)"));
                eprintln!("course {id} is {ready}: {title} ({lessons} lessons)");
                Some(ExitCode::SUCCESS)
            }
            ReplyStatus::Error => {
                let error = reply.error.unwrap_or_default();
                spinner.abandon_with_message(format!("{}: {error}", CourseStatus::Failed));
                eprintln!("course {id} failed: {error}");
                Some(ExitCode::FAILURE)
            }
        }
    }

    /// The broker closed the reply queue before a final reply: a failure.
    pub(super) fn broker_closed(&self) -> ExitCode {
        self.0
            .abandon_with_message("the broker closed the reply queue");
        ExitCode::FAILURE
    }
}
