//! What a lesson page shows beside the markdown: its interactive elements
//! (code, exercises, questions of four kinds) and its subtitles as a
//! transcript with WebVTT / SRT downloads. Elements are read back into the
//! domain's [`InteractiveElement`], so every kind it has is shown; the
//! page's script checks answers, and every answer also has a reveal that
//! works without it.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::pages::course_id;
use super::session::Session;
use super::views::{ElementCard, ElementView, Transcript, TranscriptCue};
use super::PageError;
use crate::domain::subtitles::Cue;
use crate::domain::{ElementBody, InteractiveElement};
use crate::ingress::http::courses::subtitles::{self, SubtitlesQuery};
use crate::ingress::http::ApiState;

/// The cards of a lesson's elements (their JSON, as the read model has
/// it). An element the domain cannot read is left out.
pub(crate) fn cards(values: &[Value]) -> Vec<ElementCard> {
    values
        .iter()
        .filter_map(|v| serde_json::from_value::<InteractiveElement>(v.clone()).ok())
        .enumerate()
        .map(|(i, e)| card(i + 1, e.body))
        .collect()
}

/// `A`, `B`, ... for option `i`.
fn letter(i: usize) -> String {
    u8::try_from(i)
        .ok()
        .filter(|i| *i < 26)
        .map(|i| char::from(b'A' + i).to_string())
        .unwrap_or_else(|| (i + 1).to_string())
}

/// Options with their letters.
fn lettered(options: Vec<String>) -> Vec<(String, String)> {
    options
        .into_iter()
        .enumerate()
        .map(|(i, o)| (letter(i), o))
        .collect()
}

fn card(position: usize, body: ElementBody) -> ElementCard {
    let kind = body.kind();
    let indexes = |ix: &[usize]| {
        ix.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let named = |options: &[String], ix: &[usize]| {
        ix.iter()
            .filter_map(|&i| options.get(i).map(|o| format!("{}. {o}", letter(i))))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (heading, body) = match body {
        ElementBody::CodeBlock {
            language,
            code,
            caption,
            expected_output,
        } => (
            if caption.trim().is_empty() {
                format!("Code ({language})")
            } else {
                caption.clone()
            },
            ElementView::Code {
                language: language.to_ascii_lowercase(),
                code,
                caption,
                output: expected_output.filter(|o| !o.trim().is_empty()),
            },
        ),
        ElementBody::Exercise {
            prompt,
            hints,
            solution,
            difficulty,
        } => (
            "Exercise".to_owned(),
            ElementView::Exercise {
                difficulty: difficulty.to_string(),
                prompt_html: crate::render::snippet(&prompt),
                hints_html: hints.iter().map(|h| crate::render::snippet(h)).collect(),
                solution_html: crate::render::snippet(&solution),
            },
        ),
        ElementBody::SingleChoice {
            question,
            options,
            answer_index,
            explanation,
        } => {
            let right = [answer_index as usize];
            (
                "Question".to_owned(),
                ElementView::Choice {
                    answer: indexes(&right),
                    answer_text: named(&options, &right),
                    question,
                    options: lettered(options),
                    multiple: false,
                    explanation,
                },
            )
        }
        ElementBody::MultipleChoice {
            question,
            options,
            answer_indexes,
            explanation,
        } => {
            let mut right: Vec<usize> = answer_indexes.iter().map(|&i| i as usize).collect();
            right.sort_unstable();
            (
                "Question: pick every right answer".to_owned(),
                ElementView::Choice {
                    answer: indexes(&right),
                    answer_text: named(&options, &right),
                    question,
                    options: lettered(options),
                    multiple: true,
                    explanation,
                },
            )
        }
        ElementBody::TrueFalse {
            question,
            answer,
            explanation,
        } => {
            let right = [usize::from(!answer)];
            (
                "True or false?".to_owned(),
                ElementView::Choice {
                    answer: indexes(&right),
                    answer_text: if answer { "True" } else { "False" }.to_owned(),
                    question,
                    options: vec![
                        (String::new(), "True".to_owned()),
                        (String::new(), "False".to_owned()),
                    ],
                    multiple: false,
                    explanation,
                },
            )
        }
        ElementBody::ShortAnswer {
            question,
            accepted_answers,
            explanation,
        } => (
            "Short answer".to_owned(),
            ElementView::ShortAnswer {
                question,
                accepted_json: serde_json::to_string(&accepted_answers).unwrap_or_default(),
                answer_text: accepted_answers.join(" / "),
                explanation,
            },
        ),
    };
    ElementCard {
        anchor: format!("element-{position}"),
        kind,
        heading,
        body,
    }
}

/// The transcript of a lesson from its subtitle tracks (language, cues
/// JSON): the track in `language` (the course's), else the first one; with
/// every track's downloads.
pub(crate) fn transcript(
    lesson_url: &str,
    language: &str,
    tracks: Vec<(String, Value)>,
) -> Option<Transcript> {
    let downloads = tracks
        .iter()
        .map(|(l, _)| {
            let q = serde_urlencoded::to_string([("lang", l)]).unwrap_or_default();
            (
                l.clone(),
                format!("{lesson_url}/subtitles.vtt?{q}"),
                format!("{lesson_url}/subtitles.srt?{q}"),
            )
        })
        .collect();
    let (language, cues) = tracks
        .iter()
        .find(|(l, _)| l == language)
        .or_else(|| tracks.first())?
        .clone();
    let cues: Vec<Cue> = serde_json::from_value(cues).ok()?;
    Some(Transcript {
        language,
        cues: cues
            .into_iter()
            .map(|c| TranscriptCue {
                at: clock(c.start_ms),
                datetime: format!("PT{}.{:03}S", c.start_ms / 1000, c.start_ms % 1000),
                text: c.text.replace('\n', " "),
            })
            .collect(),
        downloads,
    })
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn clock(ms: u32) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Query of a subtitle download.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DownloadQuery {
    lang: Option<String>,
}

/// `/courses/{id}/lessons/{n}/subtitles.{vtt|srt}?lang=`: the API's
/// subtitle file (the same handler, so the same rules and tenant checks),
/// for the page's session, as a download.
pub(crate) async fn subtitle_file(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, PageError> {
    let session = Session::begin(&req, &state)?;
    let (id, n, ext) = path.into_inner();
    let id = course_id(&id)?;
    let missing = || PageError::not_found("There is no such subtitle file.");
    let number: u32 = n.parse().map_err(|_| missing())?;
    if ext != "vtt" && ext != "srt" {
        return Err(missing());
    }
    let query = web::Query::<DownloadQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let lang = query.lang.clone();
    let mut response = subtitles::get(
        state,
        session.user,
        web::Path::from((id, number)),
        web::Query(SubtitlesQuery {
            lang: query.lang,
            format: Some(ext.clone()),
        }),
    )
    .await?;
    let name = format!(
        "lesson-{number}{}.{ext}",
        lang.map(|l| format!(".{}", crate::render::slug(&l)))
            .unwrap_or_default()
    );
    if let Ok(value) = format!("attachment; filename=\"{name}\"").parse() {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_kind_becomes_a_card_with_its_answer() {
        let cards = cards(&[
            json!({"id": "c", "kind": "code_block", "language": "Python", "code": "print(1)", "caption": ""}),
            json!({"id": "m", "kind": "multiple_choice", "question": "Q?", "options": ["a", "b", "c"],
                   "answer_indexes": [2, 0], "explanation": "E."}),
            json!({"id": "t", "kind": "true_false", "question": "S.", "answer": false}),
            json!({"id": "s", "kind": "short_answer", "question": "Q?", "accepted_answers": ["x", "y"]}),
            json!({"id": "e", "kind": "exercise", "prompt": "# Do <b>it</b><script>x()</script>",
                   "hints": ["h"], "solution": "s", "difficulty": "beginner"}),
            json!({"id": "bad", "kind": "flashcard"}),
        ]);
        assert_eq!(cards.len(), 5);
        assert_eq!(cards[0].heading, "Code (Python)");
        assert_eq!(cards[4].anchor, "element-5");
        match &cards[1].body {
            ElementView::Choice {
                answer,
                answer_text,
                multiple,
                ..
            } => {
                assert_eq!((answer.as_str(), *multiple), ("0,2", true));
                assert_eq!(answer_text, "A. a; C. c");
            }
            _ => panic!("not a choice"),
        }
        assert!(matches!(&cards[2].body, ElementView::Choice { answer, .. } if answer == "1"));
        assert!(
            matches!(&cards[3].body, ElementView::ShortAnswer { accepted_json, .. } if accepted_json == r#"["x","y"]"#)
        );
        match &cards[4].body {
            ElementView::Exercise { prompt_html, .. } => {
                assert!(prompt_html.starts_with("<h4>"), "{prompt_html}");
                assert!(!prompt_html.contains("<script"), "{prompt_html}");
            }
            _ => panic!("not an exercise"),
        }
    }

    #[test]
    fn a_transcript_is_the_course_language_track_with_every_download() {
        let cues = |t: &str| {
            json!([{"start_ms": 0, "end_ms": 1500, "text": t},
                                    {"start_ms": 3_723_000, "end_ms": 3_724_000, "text": "two\nlines"}])
        };
        let t = transcript(
            "/courses/x/lessons/1",
            "en",
            vec![("de".into(), cues("Hallo")), ("en".into(), cues("Hello"))],
        )
        .unwrap();
        assert_eq!(t.language, "en");
        assert_eq!(t.cues[0].text, "Hello");
        assert_eq!(
            (t.cues[1].at.as_str(), t.cues[1].text.as_str()),
            ("1:02:03", "two lines")
        );
        assert_eq!(t.cues[1].datetime, "PT3723.000S");
        assert_eq!(
            t.downloads[0].1,
            "/courses/x/lessons/1/subtitles.vtt?lang=de"
        );
        assert!(transcript("/l", "en", vec![]).is_none());
    }
}
