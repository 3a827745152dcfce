//! The offline generator: deterministic courses from templates, with no
//! network and no key.
//!
//! It exists so that the service runs end to end on a bare machine (and in
//! tests and benchmarks) with output of the real shape and size: an outline
//! that follows a teaching arc from first ideas to a closing project, and
//! lessons of a few kilobytes of Markdown built from the topic, the lesson's
//! concepts and objectives, pitched at the grade level, each with a worked
//! example (with code when the topic is technical), an exercise and its
//! solution, a summary and a 3-5 question quiz. The same request always
//! yields the same course. Text is in English whatever the requested
//! language; the events say `model: "offline"`.

use std::fmt::Write;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;

use super::{prompts, LlmClient, LlmError};
use crate::domain::{
    CourseRequested, LessonGenerated, LessonPlan, LessonSection, OutlineGenerated, QuizQuestion,
    SourceRef, TokenUsage,
};

/// The model name the offline generator records.
pub const MODEL: &str = "offline";

/// [`LlmClient`] that writes templated courses locally.
#[derive(Debug, Clone, Default)]
pub struct OfflineClient {
    latency: Duration,
}

impl OfflineClient {
    /// A generator that waits `latency` per call, to stand in for a real
    /// model in benchmarks (zero: answer at once).
    pub fn new(latency: Duration) -> Self {
        Self { latency }
    }

    async fn simulate_latency(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[async_trait]
impl LlmClient for OfflineClient {
    fn model(&self) -> &str {
        MODEL
    }

    async fn outline(&self, course: &CourseRequested) -> Result<OutlineGenerated, LlmError> {
        self.simulate_latency().await;
        Ok(outline(course))
    }

    async fn lesson(
        &self,
        course: &CourseRequested,
        outline: &OutlineGenerated,
        number: u32,
    ) -> Result<LessonGenerated, LlmError> {
        self.simulate_latency().await;
        lesson(course, outline, number).ok_or_else(|| LlmError::InvalidAnswer {
            attempts: 1,
            reason: format!("lesson {number} is not in the outline"),
        })
    }
}

/// Who the course is for, read from the free-text grade level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Children,
    Teens,
    Adults,
    Advanced,
}

impl Audience {
    fn of(course: &CourseRequested) -> Self {
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
    fn describe(course: &CourseRequested) -> String {
        match &course.grade_level {
            Some(grade) => format!("learners at the level \"{grade}\""),
            None => "curious adults starting from scratch".to_owned(),
        }
    }

    /// A study tip suited to the audience.
    fn tip(self) -> &'static str {
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
struct Stage {
    title: &'static str,
    concepts: [&'static str; 3],
    objectives: [&'static str; 2],
}

const OPENING: Stage = Stage {
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

const CLOSING: Stage = Stage {
    title: "Bringing it together: a {t} project",
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

const MIDDLE: [Stage; 12] = [
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

/// FNV-1a: a stable hash for picking template variants (std's hasher may
/// change between Rust releases, and output must not).
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn fill(template: &str, topic: &str) -> String {
    template
        .replace("{T}", &capitalize(topic))
        .replace("{t}", topic)
}

/// The stages of an `n`-lesson course: an opening, the middle of the arc
/// (repeated as "part 2", ... for very long courses) and a closing project.
fn stages(n: usize) -> Vec<(&'static Stage, usize)> {
    match n {
        0 => vec![],
        1 => vec![(&OPENING, 1)],
        _ => {
            let mut all = vec![(&OPENING, 1)];
            all.extend((0..n - 2).map(|i| (&MIDDLE[i % MIDDLE.len()], i / MIDDLE.len() + 1)));
            all.push((&CLOSING, 1));
            all
        }
    }
}

/// The outline of a course: deterministic in the request.
pub fn outline(course: &CourseRequested) -> OutlineGenerated {
    let topic = course.topic.trim();
    let n = usize::from(course.num_lessons);
    let lessons: Vec<LessonPlan> = stages(n)
        .into_iter()
        .enumerate()
        .map(|(i, (stage, part))| {
            let mut title = fill(stage.title, topic);
            if part > 1 {
                let _ = write!(title, " (part {part})");
            }
            LessonPlan {
                number: i as u32 + 1,
                title,
                concepts: stage.concepts.iter().map(|c| fill(c, topic)).collect(),
                objectives: stage.objectives.iter().map(|o| fill(o, topic)).collect(),
            }
        })
        .collect();
    let titles = [
        "{T}: From First Ideas to Confident Practice",
        "Understanding {T}",
        "{T}, Step by Step",
        "Discovering {T}",
    ];
    let title = fill(
        titles[(stable_hash(topic) % titles.len() as u64) as usize],
        topic,
    );
    let audience = Audience::describe(course);
    let description = format!(
        "A {n}-lesson course on {topic} for {audience}. It starts with what {topic} is and \
         why it matters, then builds step by step towards using it with confidence{}. \
         Every lesson has a worked example, an exercise with its solution and a short quiz.",
        if n > 1 {
            ", ending with a project that brings the ideas together"
        } else {
            ""
        }
    );
    let prompt = prompts::outline(course);
    let completion_chars = title.len()
        + description.len()
        + lessons
            .iter()
            .map(|l| l.title.len() + l.concepts.concat().len() + l.objectives.concat().len() + 60)
            .sum::<usize>();
    OutlineGenerated {
        title,
        description,
        lessons,
        model: MODEL.to_owned(),
        usage: usage(prompt.system.len() + prompt.user.len(), completion_chars),
    }
}

/// Tokens as a real model would roughly count them (about 4 characters each).
fn usage(prompt_chars: usize, completion_chars: usize) -> TokenUsage {
    let prompt_tokens = (prompt_chars / 4) as u64 + 8;
    let completion_tokens = (completion_chars / 4) as u64 + 1;
    TokenUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

/// Words in a topic that mark it as technical (code examples fit).
const TECHNICAL: [&str; 24] = [
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
    sections.push(LessonSection {
        heading: "Exercise".into(),
        body: format!(
            "{objective}. To do so, write a short answer (five to eight sentences) to this \
             task: choose one example of {topic} from your own experience or reading, \
             and explain it using {c0} and {c2}.\n\n\
             ### Solution\n\n\
             A strong answer names a specific example rather than a general one, uses \
             {c0} to say what is going on, and uses {c2} to say why it matters. It \
             ends by checking itself: would someone who has not taken this lesson \
             follow it? If your answer only lists terms, go back to the worked example \
             and add the reasoning that connects them."
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
    let prompt = prompts::lesson(course, outline, number);
    let completion_chars = content_md.len()
        + sections
            .iter()
            .map(|s| s.heading.len() + s.body.len())
            .sum::<usize>()
        + quiz
            .iter()
            .map(|q| q.question.len() + q.options.concat().len() + q.explanation.len())
            .sum::<usize>();
    Some(LessonGenerated {
        number,
        title: plan.title.clone(),
        content_md,
        sections,
        quiz,
        sources,
        model: MODEL.to_owned(),
        usage: usage(prompt.system.len() + prompt.user.len(), completion_chars),
    })
}

/// 3 to 5 questions; the correct option moves around from question to question.
fn quiz(topic: &str, plan: &LessonPlan, objectives: &[String], number: u32) -> Vec<QuizQuestion> {
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

/// References: the requested collection when there is a source filter,
/// else an encyclopedia search and the course notes.
fn sources(course: &CourseRequested, outline: &OutlineGenerated, number: u32) -> Vec<SourceRef> {
    let notes = SourceRef {
        title: format!("{}, course notes for lesson {number}", outline.title),
        url: None,
    };
    if let Some(filter) = &course.source_filter {
        return vec![
            SourceRef {
                title: format!("Reference collection \"{filter}\": {}", course.topic),
                url: None,
            },
            notes,
        ];
    }
    let language = course
        .language
        .split('-')
        .next()
        .filter(|l| l.len() == 2 || l.len() == 3)
        .unwrap_or("en")
        .to_lowercase();
    let search = Url::parse_with_params(
        &format!("https://{language}.wikipedia.org/wiki/Special:Search"),
        &[("search", course.topic.as_str())],
    )
    .ok()
    .map(String::from);
    vec![
        SourceRef {
            title: format!("Wikipedia: {}", course.topic),
            url: search,
        },
        notes,
    ]
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn course(topic: &str, grade: Option<&str>) -> CourseRequested {
        CourseRequested {
            request_id: Uuid::nil(),
            user_id: Uuid::nil(),
            topic: topic.into(),
            grade_level: grade.map(Into::into),
            num_lessons: 3,
            language: "en".into(),
            source_filter: None,
        }
    }

    #[test]
    fn grade_level_sets_the_audience() {
        let of = |grade| Audience::of(&course("x", grade));
        assert_eq!(of(Some("Grade 3")), Audience::Children);
        assert_eq!(of(Some("7th grade")), Audience::Teens);
        assert_eq!(of(Some("high school")), Audience::Teens);
        assert_eq!(of(Some("University")), Audience::Advanced);
        assert_eq!(of(None), Audience::Adults);
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
