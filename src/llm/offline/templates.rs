//! The offline generator's template data: the teaching arc a course
//! follows (an opening, the middle stages, a closing project), the title
//! variants, the words that mark a topic as technical, and the audiences
//! the text is pitched at. `{T}` / `{t}` stand for the topic, capitalized or not.

use crate::domain::CourseRequested;

/// Course titles; one is picked by the topic's hash.
pub(super) const COURSE_TITLES: [&str; 4] = [
    "{T}: From First Ideas to Confident Practice",
    "Understanding {T}",
    "{T}, Step by Step",
    "Discovering {T}",
];

/// Who the course is for, read from the free-text grade level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Audience {
    Children,
    Teens,
    Adults,
    Advanced,
}

impl Audience {
    pub(super) fn of(course: &CourseRequested) -> Self {
        let Some(grade) = course.grade_level.as_deref() else {
            return Self::Adults;
        };
        let g = grade.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| g.contains(w));
        if has(&[
            "university",
            "college",
            "undergrad",
            "graduate",
            "master",
            "phd",
            "professional",
            "expert",
            "advanced",
        ]) {
            return Self::Advanced;
        }
        if has(&["kinder", "elementary", "primary", "child", "kid"]) {
            return Self::Children;
        }
        if has(&["middle", "high school", "secondary", "teen"]) {
            return Self::Teens;
        }
        let number: String = g
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        match number.parse::<u32>() {
            Ok(0..=5) => Self::Children,
            Ok(6..=12) => Self::Teens,
            _ => Self::Adults,
        }
    }

    /// Who the course is for, in words.
    pub(super) fn describe(course: &CourseRequested) -> String {
        match &course.grade_level {
            Some(grade) => format!("learners at the level \"{grade}\""),
            None => "curious adults starting from scratch".to_owned(),
        }
    }

    /// A study tip suited to the audience.
    pub(super) fn tip(self) -> &'static str {
        match self {
            Self::Children => {
                "Take your time here: read each sentence slowly, picture it in your head, \
                 and tell someone at home what you found out."
            }
            Self::Teens => {
                "Before moving on, write a one-line definition of it in your notebook, \
                 using your own words rather than the ones above."
            }
            Self::Adults => {
                "Relate it to something you already know from work or daily life; \
                 a familiar anchor makes a new idea much easier to keep."
            }
            Self::Advanced => {
                "Pay attention to the assumptions behind it and to the cases where \
                 they stop holding: that is where the interesting questions are."
            }
        }
    }
}

/// One step of the teaching arc a course follows.
pub(super) struct Stage {
    pub(super) title: &'static str,
    pub(super) concepts: [&'static str; 3],
    pub(super) objectives: [&'static str; 2],
}

pub(super) const OPENING: Stage = Stage {
    title: "What is {T}? A first look",
    concepts: [
        "what {t} is and why it matters",
        "the basic vocabulary of {t}",
        "where {t} shows up in everyday life",
    ],
    objectives: [
        "Explain in your own words what {t} is",
        "Use the basic vocabulary of {t} correctly",
    ],
};

pub(super) const CLOSING: Stage = Stage {
    title: "Bringing it together: a project on {t}",
    concepts: [
        "connecting the main ideas of {t}",
        "planning a small project on {t}",
        "reviewing and improving your own work",
    ],
    objectives: [
        "Combine the ideas of the course to solve a complete problem in {t}",
        "Evaluate your own solution and name one way to improve it",
    ],
};

pub(super) const MIDDLE: [Stage; 12] = [
    Stage {
        title: "The building blocks of {t}",
        concepts: [
            "the basic parts of {t}",
            "how those parts fit together",
            "simple models of {t}",
        ],
        objectives: [
            "Identify the main parts of {t}",
            "Describe how the parts of {t} depend on each other",
        ],
    },
    Stage {
        title: "How {t} works, step by step",
        concepts: [
            "cause and effect in {t}",
            "the main process behind {t}",
            "inputs, outputs and results",
        ],
        objectives: [
            "Describe the main process of {t} in order",
            "Predict what happens when one step of it changes",
        ],
    },
    Stage {
        title: "Working through examples of {t}",
        concepts: [
            "reading a problem carefully",
            "choosing a method that fits",
            "checking whether a result makes sense",
        ],
        objectives: [
            "Solve a typical problem about {t} step by step",
            "Check a solution for mistakes",
        ],
    },
    Stage {
        title: "Common mistakes and misconceptions about {t}",
        concepts: [
            "typical misunderstandings of {t}",
            "why intuition can mislead",
            "testing an idea against evidence",
        ],
        objectives: [
            "Recognise three common misconceptions about {t}",
            "Correct a flawed explanation using evidence",
        ],
    },
    Stage {
        title: "Tools and techniques for {t}",
        concepts: [
            "the standard tools of {t}",
            "when to use which technique",
            "working accurately and safely",
        ],
        objectives: [
            "Choose a suitable tool or technique for a task in {t}",
            "Apply the technique correctly to a simple case",
        ],
    },
    Stage {
        title: "Observing and measuring {t}",
        concepts: [
            "collecting information about {t}",
            "organising results in tables and charts",
            "drawing careful conclusions",
        ],
        objectives: [
            "Record observations about {t} in an organised way",
            "Draw a conclusion that the data supports",
        ],
    },
    Stage {
        title: "{T} in the real world",
        concepts: [
            "applications of {t}",
            "trade-offs in practice",
            "people whose work depends on {t}",
        ],
        objectives: [
            "Describe two real-world applications of {t}",
            "Explain a trade-off someone working with {t} faces",
        ],
    },
    Stage {
        title: "How our understanding of {t} developed",
        concepts: [
            "early ideas about {t}",
            "discoveries that changed the picture",
            "open questions today",
        ],
        objectives: [
            "Outline how ideas about {t} changed over time",
            "Explain why one discovery mattered",
        ],
    },
    Stage {
        title: "Comparing approaches to {t}",
        concepts: [
            "different ways of looking at {t}",
            "strengths and weaknesses of each approach",
            "choosing an approach for a goal",
        ],
        objectives: [
            "Compare two approaches to {t}",
            "Justify a choice of approach for a given situation",
        ],
    },
    Stage {
        title: "Solving harder problems in {t}",
        concepts: [
            "breaking a big problem into parts",
            "combining several ideas of {t}",
            "explaining a solution clearly",
        ],
        objectives: [
            "Break a multi-step problem about {t} into smaller steps",
            "Present a solution so that others can follow it",
        ],
    },
    Stage {
        title: "{T} and neighbouring subjects",
        concepts: [
            "links between {t} and other subjects",
            "borrowing methods across fields",
            "seeing the bigger picture",
        ],
        objectives: [
            "Name a subject closely connected to {t} and explain the link",
            "Use an idea from another field to shed light on {t}",
        ],
    },
    Stage {
        title: "Asking good questions about {t}",
        concepts: [
            "turning curiosity into a question",
            "finding reliable information on {t}",
            "evaluating sources critically",
        ],
        objectives: [
            "Formulate a clear, answerable question about {t}",
            "Judge whether a source about {t} is reliable",
        ],
    },
];

/// Words in a topic that mark it as technical (code examples fit).
pub(super) const TECHNICAL: [&str; 24] = [
    "program",
    "coding",
    "code",
    "software",
    "algorithm",
    "data structure",
    "computer",
    "python",
    "rust",
    "java",
    "javascript",
    "typescript",
    "sql",
    "database",
    "web",
    "html",
    "api",
    "machine learning",
    "linux",
    "git",
    "c++",
    "golang",
    "docker",
    "network",
];

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn course(grade: Option<&str>) -> CourseRequested {
        CourseRequested {
            request_id: Uuid::nil(),
            user_id: Uuid::nil(),
            topic: "x".into(),
            grade_level: grade.map(Into::into),
            num_lessons: 3,
            language: "en".into(),
            source_filter: None,
            ..Default::default()
        }
    }

    #[test]
    fn grade_level_sets_the_audience() {
        let of = |grade| Audience::of(&course(grade));
        assert_eq!(of(Some("Grade 3")), Audience::Children);
        assert_eq!(of(Some("7th grade")), Audience::Teens);
        assert_eq!(of(Some("high school")), Audience::Teens);
        assert_eq!(of(Some("University")), Audience::Advanced);
        assert_eq!(of(None), Audience::Adults);
    }
}
