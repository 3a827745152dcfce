//! The offline generator's interactive elements: the worked example's code
//! (technical topics), the lesson's exercise with hints, and one question of
//! each extra kind (multiple choice, true/false, short answer). Ids are
//! `l<lesson>-<kind>-<n>`, the same for the same request every time.

use crate::domain::{Difficulty, ElementBody, InteractiveElement, LessonPlan};

/// The lesson's exercise, as its section shows it.
pub(super) struct Exercise {
    pub prompt: String,
    pub solution: String,
    pub hints: Vec<String>,
}

/// Language, code and printed output of a fenced example as
/// `code_example` writes it (```lang, the code, ```).
fn split_fence(fenced: &str) -> Option<(String, String)> {
    let rest = fenced.strip_prefix("```")?;
    let (language, body) = rest.split_once('\n')?;
    let code = body.strip_suffix("```")?.trim_end_matches('\n');
    Some((language.trim().to_owned(), code.to_owned()))
}

pub(super) fn elements(
    topic: &str,
    plan: &LessonPlan,
    number: u32,
    code: Option<&str>,
    exercise: Exercise,
    difficulty: Difficulty,
) -> Vec<InteractiveElement> {
    let id = |kind: &str| format!("l{number}-{kind}-1");
    let concept = |i: usize| {
        plan.concepts
            .get(i % plan.concepts.len().max(1))
            .cloned()
            .unwrap_or_else(|| topic.to_owned())
    };
    let mut out = Vec::new();
    if let Some((language, code)) = code.and_then(split_fence) {
        // The checklist prints one line per concept (the SQL one a table).
        let expected_output = (language != "sql").then(|| {
            plan.concepts
                .iter()
                .enumerate()
                .map(|(i, c)| format!("Step {}: {}", i + 1, c.replace(['"', '\'', '\\', '`'], "")))
                .collect::<Vec<_>>()
                .join("\n")
        });
        out.push(InteractiveElement {
            id: id("code"),
            body: ElementBody::CodeBlock {
                language,
                code,
                caption: format!(
                    "Lesson {number}: a checklist to apply while solving the exercise"
                ),
                expected_output,
            },
        });
    }
    out.push(InteractiveElement {
        id: id("exercise"),
        body: ElementBody::Exercise {
            prompt: exercise.prompt,
            hints: exercise.hints,
            solution: exercise.solution,
            difficulty,
        },
    });
    let (c0, c1) = (concept(0), concept(1));
    let correct = number as usize % 2;
    let mut options = vec![
        format!("Explaining {c0} in your own words"),
        format!("Memorising a definition of {c1} without examples"),
        format!("Connecting {c1} to a concrete case"),
    ];
    // The wrong option moves so that the answers are not always the same.
    options.swap(1, 1 + correct);
    let wrong = 1 + correct;
    out.push(InteractiveElement {
        id: id("multiple"),
        body: ElementBody::MultipleChoice {
            question: format!(
                "Which of these help you understand {topic}? Choose every one that does."
            ),
            answer_indexes: (0..3u32).filter(|i| *i as usize != wrong).collect(),
            options,
            explanation:
                "Explaining and connecting ideas builds understanding; memorising alone does not."
                    .into(),
        },
    });
    out.push(InteractiveElement {
        id: id("truefalse"),
        body: ElementBody::TrueFalse {
            question: format!("Knowing the definition of {c0} is enough to use it."),
            answer: false,
            explanation: format!(
                "The lesson shows that using {c0} takes reasoning beyond its definition."
            ),
        },
    });
    out.push(InteractiveElement {
        id: id("short"),
        body: ElementBody::ShortAnswer {
            question: format!("Name one key idea of lesson {number}, \"{}\".", plan.title),
            accepted_answers: plan
                .concepts
                .clone()
                .into_iter()
                .chain([topic.to_owned()])
                .collect(),
            explanation: format!("The lesson's key ideas are {}.", plan.concepts.join(", ")),
        },
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_example_splits_into_language_and_code() {
        assert_eq!(
            split_fence("```python\nprint(1)\n```"),
            Some(("python".into(), "print(1)".into()))
        );
        assert_eq!(split_fence("no fence"), None);
    }
}
