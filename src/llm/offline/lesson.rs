//! The offline generator's lessons: Markdown sections built from the
//! outline's plan (introduction, one section per concept, a worked example
//! with code for technical topics, an exercise and its solution, a
//! summary), a quiz and the sources.

use std::fmt::Write;

use super::elements::{elements, Exercise};
use super::quiz::quiz;
use super::templates::{Audience, TECHNICAL};
use super::{capitalize, completion_chars, stable_hash, usage, MODEL};
use crate::domain::metadata::lesson_minutes;
use crate::domain::{
    CourseRequested, LessonGenerated, LessonPlan, LessonSection, OutlineGenerated, SourceRef,
};
use crate::llm::prompts::{self, course_difficulty as difficulty};

fn is_technical(topic: &str) -> bool {
    let t = topic.to_lowercase();
    t.split(|c: char| !c.is_alphanumeric() && c != '+')
        .any(|word| TECHNICAL.contains(&word))
        || TECHNICAL
            .iter()
            .filter(|k| k.contains(' '))
            .any(|k| t.contains(k))
}

/// "a, b and c".
fn join_and(items: &[String]) -> String {
    match items {
        [] => "its key ideas".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A code example in a language matching the topic.
fn code_example(topic: &str, plan: &LessonPlan) -> String {
    let t = topic.to_lowercase();
    let clean = |s: &str| s.replace(['"', '\'', '\\', '`'], "");
    let items: Vec<String> = plan.concepts.iter().map(|c| clean(c)).collect();
    let words = |w: &str| t.split(|c: char| !c.is_alphanumeric()).any(|x| x == w);
    if words("rust") {
        let list = items
            .iter()
            .map(|c| format!("        \"{c}\","))
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "```rust\n/// Lesson {n}: a checklist to apply while solving the exercise.\n\
             fn main() {{\n    let steps = [\n{list}\n    ];\n    \
             for (i, step) in steps.iter().enumerate() {{\n        \
             println!(\"Step {{}}: {{}}\", i + 1, step);\n    }}\n}}\n```",
            n = plan.number
        )
    } else if words("sql") || words("database") {
        let rows = items
            .iter()
            .enumerate()
            .map(|(i, c)| format!("  ({}, '{c}')", i + 1))
            .collect::<Vec<_>>()
            .join(",\n");
        format!(
            "```sql\n-- Lesson {n}: keep track of the ideas you practise.\n\
             CREATE TABLE lesson_steps (step int PRIMARY KEY, idea text NOT NULL);\n\
             INSERT INTO lesson_steps (step, idea) VALUES\n{rows};\n\
             SELECT step, idea FROM lesson_steps ORDER BY step;\n```",
            n = plan.number
        )
    } else if words("javascript") || words("typescript") || words("web") || words("html") {
        let list = items
            .iter()
            .map(|c| format!("  \"{c}\","))
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "```javascript\n// Lesson {n}: a checklist to apply while solving the exercise.\n\
             const steps = [\n{list}\n];\n\
             steps.forEach((step, i) => console.log(`Step ${{i + 1}}: ${{step}}`));\n```",
            n = plan.number
        )
    } else {
        let list = items
            .iter()
            .map(|c| format!("    \"{c}\","))
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "```python\n# Lesson {n}: a checklist to apply while solving the exercise.\n\
             steps = [\n{list}\n]\n\
             for number, step in enumerate(steps, start=1):\n    \
             print(f\"Step {{number}}: {{step}}\")\n```",
            n = plan.number
        )
    }
}

/// Lesson `number` of `outline`, or `None` when the outline has no such
/// lesson. Deterministic in its inputs.
pub fn lesson(
    course: &CourseRequested,
    outline: &OutlineGenerated,
    number: u32,
) -> Option<LessonGenerated> {
    let plan = outline.lessons.iter().find(|l| l.number == number)?;
    let topic = course.topic.trim();
    let audience = Audience::of(course);
    let total = outline.lessons.len();
    let variant = (stable_hash(topic) as usize).wrapping_add(number as usize);
    // Inside sentences: "a map of the water cycle", not "of The water cycle".
    let topic_inside = super::article_lowered(topic);
    let topic = topic_inside.as_str();
    let concept = |i: usize| -> String {
        plan.concepts
            .get(i % plan.concepts.len().max(1))
            .cloned()
            .unwrap_or_else(|| topic.to_owned())
    };
    let objectives: Vec<String> = if plan.objectives.is_empty() {
        vec![format!("Explain the main ideas of \"{}\"", plan.title)]
    } else {
        plan.objectives.clone()
    };

    let mut sections = Vec::new();

    // Introduction: where this lesson sits in the course.
    let mut intro = String::new();
    if number == 1 {
        let _ = write!(
            intro,
            "Welcome to *{}*. This first lesson gives you a map of {topic}: what it is, \
             the words people use to talk about it, and where you meet it without \
             noticing. Nothing here assumes you have studied {topic} before.",
            outline.title
        );
    } else {
        let previous = outline
            .lessons
            .iter()
            .find(|l| l.number == number - 1)
            .map_or("the previous lesson", |l| l.title.as_str());
        let _ = write!(
            intro,
            "In the previous lesson, *{previous}*, you built up ideas that this lesson \
             now puts to work. *{}* takes you one step further into {topic}: you will \
             meet {}.",
            plan.title,
            join_and(&plan.concepts)
        );
    }
    let _ = write!(
        intro,
        "\n\nBy the end of this lesson you will be able to:\n\n{}",
        objectives
            .iter()
            .map(|o| format!("- {o}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    sections.push(LessonSection {
        heading: "Introduction".into(),
        body: intro,
    });

    // One section per concept, phrased differently from lesson to lesson.
    let n_concepts = plan.concepts.len().max(1);
    for i in 0..n_concepts {
        let c = concept(i);
        let next = concept(i + 1);
        let opening = match (variant + i) % 3 {
            0 => format!(
                "{} is one of the ideas that make {topic} understandable. A good way to \
                 see why is to ask what would change if it were missing: much of {topic} \
                 would suddenly be harder to explain.",
                capitalize(&c)
            ),
            1 => format!(
                "People who work with {topic} come back to {c} again and again, because \
                 it connects what you see on the surface with what is going on underneath. \
                 Start from a simple case, describe it in plain words, and only then add detail."
            ),
            _ => format!(
                "Think of {c} as a question you can ask about any situation involving \
                 {topic}: what is happening here, and why? Answering it carefully is \
                 often the quickest way to make sense of something new."
            ),
        };
        let practice = match i % 3 {
            0 => format!(
                "{}\n\nThree questions help you get a firm hold on it:\n\n\
                 - **What is it?** Describe {c} without jargon, as if to a friend.\n\
                 - **Why does it matter?** Say what would go wrong in {topic} without it.\n\
                 - **How do you spot it?** Point to a concrete example where it is at work.\n\n\
                 Keep {next} in mind as you answer: the two ideas support each other.",
                audience.tip()
            ),
            1 => format!(
                "**Try this.** Sketch {c} as a simple diagram: a box for each part you can \
                 name, and an arrow for each connection you can explain in one sentence. \
                 Arrows you cannot explain yet show you exactly what to study next."
            ),
            _ => format!(
                "**Watch out.** A common mistake is to treat {c} as a fact to memorise \
                 rather than a tool to use. If you can say when it applies and when it \
                 does not, you understand it; if you can only repeat a definition, go \
                 back to an example and work through it again."
            ),
        };
        let body = format!("{opening}\n\n{practice}");
        sections.push(LessonSection {
            heading: capitalize(&c),
            body,
        });
    }

    // Worked example.
    let (c0, c1) = (concept(0), concept(1));
    let mut example = format!(
        "**Problem.** A classmate says: \"To understand {topic}, you only need to memorise \
         a few definitions.\" Using {c0} and {c1}, decide whether they are right.\n\n\
         **Step 1: pin down the claim.** The claim is that definitions alone are enough. \
         To test it we need a situation where knowing the words is not the same as \
         knowing what to do.\n\n\
         **Step 2: apply {c0}.** Pick one everyday case of {topic} and describe it \
         using {c0}. Notice that you had to explain *how* things connect, not just name them.\n\n\
         **Step 3: apply {c1}.** Now look at the same case through {c1}. It adds a second \
         angle that no single definition covers.\n\n\
         **Step 4: check the result.** Both steps needed reasoning beyond the definitions, \
         so the claim is too strong: definitions are a starting point, and understanding \
         comes from using them.\n\n\
         **Answer.** The classmate is only partly right."
    );
    if is_technical(topic) {
        let _ = write!(
            example,
            "\n\nIn code, the same approach becomes a checklist you can run and extend:\n\n{}",
            code_example(topic, plan)
        );
    }
    sections.push(LessonSection {
        heading: "Worked example".into(),
        body: example,
    });

    // Exercise with its solution.
    let objective = objectives[variant % objectives.len()].clone();
    let c2 = concept(2);
    let exercise = Exercise {
        prompt: format!(
            "{objective}. To do so, write a short answer (five to eight sentences) to this \
             task: choose one example of {topic} from your own experience or reading, \
             and explain it using {c0} and {c2}."
        ),
        solution: format!(
            "A strong answer names a specific example rather than a general one, uses \
             {c0} to say what is going on, and uses {c2} to say why it matters. It \
             ends by checking itself: would someone who has not taken this lesson \
             follow it? If your answer only lists terms, go back to the worked example \
             and add the reasoning that connects them."
        ),
        hints: vec![
            format!("Start from one concrete case of {topic}, not a definition."),
            format!("Say what {c0} explains about it before you bring in {c2}."),
        ],
    };
    sections.push(LessonSection {
        heading: "Exercise".into(),
        body: format!(
            "{}\n\n### Solution\n\n{}",
            exercise.prompt, exercise.solution
        ),
    });

    // Summary.
    let next_up = outline
        .lessons
        .iter()
        .find(|l| l.number == number + 1)
        .map(|l| format!("Next, in lesson {}, *{}*, you will build on this.", l.number, l.title))
        .unwrap_or_else(|| {
            format!("This was the last of {total} lessons: well done for finishing the course on {topic}.")
        });
    sections.push(LessonSection {
        heading: "Summary".into(),
        body: format!(
            "{}\n\n{next_up}",
            plan.concepts
                .iter()
                .map(|c| format!("- You met {c} and practised explaining it."))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    });

    let mut content_md = format!(
        "# Lesson {number}: {}\n\n*{}, lesson {number} of {total}, for {}.*\n",
        plan.title,
        outline.title,
        Audience::describe(course)
    );
    for s in &sections {
        let _ = write!(content_md, "\n## {}\n\n{}\n", s.heading, s.body);
    }

    let quiz = quiz(topic, plan, &objectives, number);
    let sources = sources(course, outline, number);
    let prompt = prompts::lesson(course, outline, number, &[]);
    let completion_chars = completion_chars(&content_md, &sections, &quiz);
    let code = is_technical(topic).then(|| code_example(topic, plan));
    let elements = elements(
        topic,
        plan,
        number,
        code.as_deref(),
        exercise,
        difficulty(course, outline),
    );
    let exercises = elements.iter().filter(|e| e.body.is_exercise()).count();
    let questions = quiz.len() + elements.iter().filter(|e| e.body.is_question()).count();
    let estimated_minutes = lesson_minutes(&content_md, questions, exercises);
    Some(LessonGenerated {
        retrieved: Vec::new(),
        number,
        title: plan.title.clone(),
        content_md,
        sections,
        quiz,
        sources,
        model: MODEL.to_owned(),
        usage: usage(prompt.system.len() + prompt.user.len(), completion_chars),
        estimated_minutes,
        elements,
    })
}

/// References: the requested collection when there is a source filter,
/// else only the course notes. No URL is ever made up: without documents in
/// the user's library the lesson has no outside sources, and says so in the
/// notes' title. (With documents, the course actor replaces these by the
/// retrieved chunks.)
fn sources(course: &CourseRequested, outline: &OutlineGenerated, number: u32) -> Vec<SourceRef> {
    let notes = SourceRef {
        title: format!(
            "{}, course notes for lesson {number} (no documents from your library: not grounded in sources)",
            outline.title
        ),
        url: None,
        cited: None,
    };
    if let Some(filter) = &course.source_filter {
        return vec![
            SourceRef {
                title: format!("Reference collection \"{filter}\": {}", course.topic),
                url: None,
                cited: None,
            },
            notes,
        ];
    }
    vec![notes]
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::llm::offline::outline;

    fn course(topic: &str, grade: Option<&str>) -> CourseRequested {
        CourseRequested {
            request_id: Uuid::nil(),
            user_id: Uuid::nil(),
            topic: topic.into(),
            grade_level: grade.map(Into::into),
            num_lessons: 3,
            language: "en".into(),
            source_filter: None,
            ..Default::default()
        }
    }

    #[test]
    fn technical_topics_are_recognised() {
        assert!(is_technical("Rust ownership"));
        assert!(is_technical("Intro to machine learning"));
        assert!(is_technical("SQL joins"));
        assert!(!is_technical("Photosynthesis"));
        assert!(!is_technical("Trustworthy journalism"));
    }

    #[test]
    fn source_filter_replaces_outside_sources() {
        let mut c = course("Bacteria", None);
        c.source_filter = Some("microbiology/".into());
        let o = outline(&c);
        let sources = sources(&c, &o, 1);
        assert!(sources.iter().all(|s| s.url.is_none()));
        assert!(sources[0].title.contains("microbiology/"));
    }
}
