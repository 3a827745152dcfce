//! The actors that generate courses.
//!
//! - [`scheduler::Scheduler`]: claims courses from the work queue under a
//!   lease, starts one [`course::CourseActor`] per claimed course, renews the
//!   leases while they work, and stops cleanly.
//! - [`course::CourseActor`]: drives one course step by step (start, outline,
//!   each lesson, completion), one event per step.

pub(crate) mod course;
pub(crate) mod scheduler;

pub use scheduler::SchedulerSettings;
