//! The offline generator's quizzes: a bank of five questions about the
//! lesson's concepts and objectives, of which each lesson asks three to five.

use crate::domain::{LessonPlan, QuizQuestion};

/// 3 to 5 questions; the correct option moves around from question to question.
pub(super) fn quiz(
    topic: &str,
    plan: &LessonPlan,
    objectives: &[String],
    number: u32,
) -> Vec<QuizQuestion> {
    let concept = |i: usize| {
        plan.concepts
            .get(i % plan.concepts.len().max(1))
            .cloned()
            .unwrap_or_else(|| topic.to_owned())
    };
    let mut bank: Vec<(String, String, [String; 3], String)> = vec![
        (
            format!(
                "Which statement best describes the role of {} in {topic}?",
                concept(0)
            ),
            format!("It is a key idea that helps explain how {topic} works"),
            [
                format!("It has nothing to do with {topic}"),
                "It only matters to specialists and never in practice".to_owned(),
                format!("It is simply another name for {topic}"),
            ],
            format!(
                "The lesson presents {} as one of the ideas that make {topic} understandable.",
                concept(0)
            ),
        ),
        (
            format!(
                "Which of these is a goal of lesson {number}, \"{}\"?",
                plan.title
            ),
            objectives[0].clone(),
            [
                format!("Memorise every fact ever written about {topic}"),
                "Avoid using examples when explaining ideas".to_owned(),
                format!("Replace {topic} with an unrelated subject"),
            ],
            "It is one of the learning objectives listed in the introduction.".to_owned(),
        ),
        (
            format!("What is a good first step when you meet a new problem about {topic}?"),
            format!("Work out which ideas, such as {}, apply to it", concept(1)),
            [
                "Guess an answer and move on".to_owned(),
                "Copy the answer to a problem that looks similar".to_owned(),
                "Skip it until someone else solves it".to_owned(),
            ],
            "Identifying the relevant ideas first is how the worked example starts.".to_owned(),
        ),
        (
            "Why does the worked example check its result at the end?".to_owned(),
            "To catch mistakes and confirm that the answer makes sense".to_owned(),
            [
                "Because checking is required by law".to_owned(),
                "To make the solution longer".to_owned(),
                "There is no reason; checking is optional decoration".to_owned(),
            ],
            "Checking a result against the problem catches errors before they spread.".to_owned(),
        ),
        (
            format!("What is the best way to make {} stick?", concept(2)),
            "Explain it in your own words and connect it to a concrete example".to_owned(),
            [
                "Read its definition once and never return to it".to_owned(),
                "Learn the words by heart without their meaning".to_owned(),
                format!("Avoid thinking about how it relates to {topic}"),
            ],
            "Explaining and connecting to examples builds understanding, not just recall."
                .to_owned(),
        ),
    ];
    let count = 3 + (number as usize % 3);
    let start = number as usize % bank.len();
    bank.rotate_left(start);
    bank.into_iter()
        .take(count)
        .enumerate()
        .map(|(i, (question, correct, wrong, explanation))| {
            let answer = (number as usize + i) % 4;
            let mut options: Vec<String> = wrong.into_iter().collect();
            options.insert(answer, correct);
            QuizQuestion {
                question,
                options,
                answer_index: answer as u32,
                explanation,
            }
        })
        .collect()
}
