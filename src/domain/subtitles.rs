//! Subtitles: a lesson's narration script (what a presenter would say),
//! split into timed cues by common subtitle practice, and written out as
//! WebVTT or SRT.
//!
//! Cues are timed from word counts at [`WORDS_PER_MINUTE`], hold at most
//! [`MAX_LINES`] lines of at most [`MAX_LINE_CHARS`] characters, and show
//! for [`MIN_CUE_MS`] to [`MAX_CUE_MS`]; each starts where the previous
//! ends, so times rise and never overlap. A translation keeps the timings
//! and replaces the text.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// The speaking rate cues are timed at.
pub const WORDS_PER_MINUTE: u32 = 150;
/// Lines a cue may have.
pub const MAX_LINES: usize = 2;
/// Characters a cue line may have.
pub const MAX_LINE_CHARS: usize = 42;
/// Shortest time a cue is shown.
pub const MIN_CUE_MS: u32 = 1_000;
/// Longest time a cue is shown.
pub const MAX_CUE_MS: u32 = 7_000;
const MS_PER_WORD: u32 = 60_000 / WORDS_PER_MINUTE;

/// One subtitle: shown from `start_ms` to `end_ms`, one or two lines
/// (separated by `\n`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cue {
    pub start_ms: u32,
    pub end_ms: u32,
    pub text: String,
}

/// What a presenter would say for a lesson: its title, then the prose of
/// its markdown (headings, paragraphs, list items), with the markup, fenced
/// code and tables left out: code is shown, not read aloud.
pub fn narration_script(title: &str, content_md: &str) -> String {
    let mut script = format!("{}.", title.trim().trim_end_matches('.'));
    let mut in_code = false;
    let mut block = String::new();
    let flush = |script: &mut String, block: &mut String| {
        let text = block.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.chars().any(char::is_alphanumeric) {
            let end = if text.ends_with(['.', '!', '?', ':']) {
                ""
            } else {
                "."
            };
            let _ = write!(script, " {text}{end}");
        }
        block.clear();
    };
    for line in content_md.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_code = !in_code;
            flush(&mut script, &mut block);
            continue;
        }
        if in_code || trimmed.starts_with('|') {
            continue;
        }
        if trimmed.is_empty() {
            flush(&mut script, &mut block);
            continue;
        }
        let (item, text) = strip_block_marker(trimmed);
        // A heading repeating the title ("Lesson 1: <title>") is said once.
        if trimmed.starts_with('#')
            && text
                .trim_end_matches('.')
                .ends_with(title.trim().trim_end_matches('.'))
        {
            continue;
        }
        if item {
            flush(&mut script, &mut block);
        }
        block.push(' ');
        block.push_str(&strip_inline(text));
        if item || trimmed.starts_with('#') {
            flush(&mut script, &mut block);
        }
    }
    flush(&mut script, &mut block);
    script
}

/// A line without its heading, list or quote marker; whether it was one
/// (a heading or an item stands as a sentence of its own).
fn strip_block_marker(line: &str) -> (bool, &str) {
    let heading = line.trim_start_matches('#');
    if heading.len() != line.len() {
        return (true, heading.trim());
    }
    for marker in ["- ", "* ", "+ ", "> "] {
        if let Some(rest) = line.strip_prefix(marker) {
            return (true, rest);
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        if let Some(rest) = line[digits..].strip_prefix(". ") {
            return (true, rest);
        }
    }
    (false, line)
}

/// Inline markup removed: emphasis, code ticks, links (their text kept).
fn strip_inline(text: &str) -> String {
    // A citation ([S1], [S1, S2]) is not read aloud.
    let text = super::citations::replace(text, |_| String::new());
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' | '`' => {}
            '_' if out.is_empty()
                || out.ends_with(' ')
                || chars.peek().is_none_or(|n| !n.is_alphanumeric()) => {}
            '[' => {}
            ']' if chars.peek() == Some(&'(') => {
                for n in chars.by_ref() {
                    if n == ')' {
                        break;
                    }
                }
            }
            '.' | ',' | ';' | ':' | '!' | '?' => {
                // where a citation stood before it: "divides [S1]." reads "divides."
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
            }
            other => out.push(other),
        }
    }
    out
}

/// `text` wrapped into at most [`MAX_LINES`] lines of at most
/// [`MAX_LINE_CHARS`] characters, or `None` when it does not fit.
pub fn wrap(text: &str) -> Option<String> {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line at least");
        let extra = usize::from(!line.is_empty());
        if line.chars().count() + extra + word.chars().count() <= MAX_LINE_CHARS {
            if extra == 1 {
                line.push(' ');
            }
            line.push_str(word);
        } else {
            if word.chars().count() > MAX_LINE_CHARS || lines.len() == MAX_LINES {
                return None;
            }
            lines.push(word.to_owned());
        }
    }
    Some(lines.join("\n"))
}

/// Words longer than a line, cut into line-sized pieces.
fn words(script: &str) -> Vec<String> {
    script
        .split_whitespace()
        .flat_map(|w| {
            let chars: Vec<char> = w.chars().collect();
            chars
                .chunks(MAX_LINE_CHARS)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The script as cues: words gathered while they fit the lines and the
/// longest showing time, a new cue after each sentence; each shown for its
/// words at the speaking rate, within the bounds.
pub fn cues(script: &str) -> Vec<Cue> {
    let max_words = (MAX_CUE_MS / MS_PER_WORD) as usize;
    let mut out: Vec<Cue> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut at = 0u32;
    let mut push = |current: &mut Vec<String>, at: &mut u32| {
        if current.is_empty() {
            return;
        }
        let text = wrap(&current.join(" ")).expect("gathered words fit");
        let ms = (current.len() as u32 * MS_PER_WORD).clamp(MIN_CUE_MS, MAX_CUE_MS);
        out.push(Cue {
            start_ms: *at,
            end_ms: *at + ms,
            text,
        });
        *at += ms;
        current.clear();
    };
    for word in words(script) {
        let mut candidate = current.clone();
        candidate.push(word.clone());
        if candidate.len() > max_words || wrap(&candidate.join(" ")).is_none() {
            push(&mut current, &mut at);
        }
        let ends_sentence = word.ends_with(['.', '!', '?']);
        current.push(word);
        if ends_sentence {
            push(&mut current, &mut at);
        }
    }
    push(&mut current, &mut at);
    out
}

/// Checks cues: each shown 1 to 7 seconds, starting no earlier than the
/// previous ends, with a text of at most two lines of 42 characters.
///
/// # Errors
/// The first cue that breaks a rule, and which rule.
pub fn validate(cues: &[Cue]) -> Result<(), String> {
    let mut previous_end = 0;
    for (i, c) in cues.iter().enumerate() {
        let n = i + 1;
        if c.start_ms < previous_end {
            return Err(format!("cue {n} starts before cue {i} ends"));
        }
        let shown = c.end_ms.saturating_sub(c.start_ms);
        if !(MIN_CUE_MS..=MAX_CUE_MS).contains(&shown) {
            return Err(format!("cue {n} is shown for {shown} ms, not 1 to 7 s"));
        }
        if !fits(&c.text) {
            return Err(format!(
                "cue {n} has more than {MAX_LINES} lines or a line over {MAX_LINE_CHARS} characters"
            ));
        }
        previous_end = c.end_ms;
    }
    Ok(())
}

/// Whether a cue text keeps to the lines and their length as it is.
pub fn fits(text: &str) -> bool {
    let lines: Vec<&str> = text.split('\n').collect();
    lines.len() <= MAX_LINES
        && lines
            .iter()
            .all(|l| !l.trim().is_empty() && l.chars().count() <= MAX_LINE_CHARS)
}

/// `HH:MM:SS` and milliseconds, with `.` (WebVTT) or `,` (SRT) before them.
fn timestamp(ms: u32, separator: char) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{separator}{ms:03}")
}

/// The cues as a WebVTT file. Cue text is escaped (`&`, `<`, `>`), so no
/// text can open a tag or end a cue.
pub fn webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n");
    for (i, c) in cues.iter().enumerate() {
        let text = c
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let _ = write!(
            out,
            "\n{}\n{} --> {}\n{text}\n",
            i + 1,
            timestamp(c.start_ms, '.'),
            timestamp(c.end_ms, '.')
        );
    }
    out
}

/// The cues as an SRT file (numbered blocks, `,` before the milliseconds).
pub fn srt(cues: &[Cue]) -> String {
    let mut out = String::new();
    for (i, c) in cues.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n",
            i + 1,
            timestamp(c.start_ms, ','),
            timestamp(c.end_ms, ','),
            c.text
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_the_prose_without_markdown_or_code() {
        let md = "# Lesson 1: Tides\n\nThe *moon* pulls `water`\nand [the sea](https://x.org).\n\n\
                  ```rust\nfn main() {}\n```\n\n- one\n- two\n\n| a | b |";
        let script = narration_script("Tides", md);
        assert_eq!(script, "Tides. The moon pulls water and the sea. one. two.");
        let cited = narration_script("Cells", "Cells divide. [S1] Membranes [S2, S3].\n\n- [S4].");
        assert_eq!(cited, "Cells. Cells divide. Membranes.");
    }

    #[test]
    fn cues_keep_to_the_lines_the_rate_and_the_bounds() {
        let long = "word ".repeat(200) + "Short. " + &"x".repeat(100);
        let cues = cues(&long);
        assert!(validate(&cues).is_ok(), "{cues:?}");
        assert_eq!(cues[0].start_ms, 0);
        // Two lines hold 16 four-letter words: 6.4 s at 400 ms a word.
        assert_eq!(cues[0].text.split_whitespace().count(), 16);
        assert_eq!(cues[0].end_ms, 6_400);
        // Seventeen short words are the most a 7 s cue can say.
        let tiny = super::cues(&"a ".repeat(40));
        assert_eq!(tiny[0].text.split_whitespace().count(), 17);
        assert_eq!(tiny[0].end_ms, 6_800);
        // A one-word sentence is shown the minimum second.
        let short = cues.iter().find(|c| c.text.ends_with("Short.")).unwrap();
        assert!(short.end_ms - short.start_ms >= MIN_CUE_MS);
        assert!(cues
            .iter()
            .all(|c| c.text.lines().all(|l| l.chars().count() <= 42)));
    }

    #[test]
    fn webvtt_and_srt_have_their_headers_timestamps_and_escapes() {
        let cues = vec![
            Cue {
                start_ms: 0,
                end_ms: 1_500,
                text: "a < b & c".into(),
            },
            Cue {
                start_ms: 3_661_001,
                end_ms: 3_662_001,
                text: "one\ntwo".into(),
            },
        ];
        let vtt = webvtt(&cues);
        assert!(vtt.starts_with("WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.500\na &lt; b &amp; c\n"));
        assert!(vtt.contains("01:01:01.001 --> 01:01:02.001\none\ntwo\n"));
        let srt = srt(&cues);
        assert!(srt.starts_with("1\n00:00:00,000 --> 00:00:01,500\na < b & c\n\n2\n"));
    }

    #[test]
    fn overlapping_or_overlong_cues_are_invalid() {
        let cue = |s, e, t: &str| Cue {
            start_ms: s,
            end_ms: e,
            text: t.into(),
        };
        assert!(validate(&[cue(0, 2_000, "a"), cue(1_000, 3_000, "b")]).is_err());
        assert!(validate(&[cue(0, 8_000, "a")]).is_err());
        assert!(validate(&[cue(0, 500, "a")]).is_err());
        assert!(validate(&[cue(0, 2_000, &"y".repeat(43))]).is_err());
        assert!(validate(&[cue(0, 2_000, "a\nb\nc")]).is_err());
    }
}
