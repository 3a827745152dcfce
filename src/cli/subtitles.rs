//! `coursegen courses subtitles`: a course's subtitles in one language, read
//! from the `subtitles` projection and written as WebVTT, SRT or JSON.

use std::process::ExitCode;

use anyhow::Context;

use super::args::SubtitlesArgs;
use crate::config::DatabaseSettings;
use crate::database::{ClusterHold, Database};
use crate::domain::metadata::parse_language_tag;
use crate::domain::subtitles::{srt, webvtt, Cue};
use crate::projections::courses::queries;

/// Writes the subtitles `args` names.
///
/// # Errors
/// Bad flags, an unknown course, no subtitles in the language, I/O.
pub(super) async fn write(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: SubtitlesArgs,
) -> anyhow::Result<ExitCode> {
    let ext = match args.format.to_ascii_lowercase().as_str() {
        "vtt" | "webvtt" => "vtt",
        "srt" => "srt",
        "json" => "json",
        other => anyhow::bail!("unknown --format {other:?}: use vtt, srt or json"),
    };
    if args.lesson.is_none() && args.out_dir.is_none() {
        anyhow::bail!("name a --lesson to print, or an --out-dir to write every lesson into");
    }
    let db = Database::open(settings, cluster).await?;
    let client = db.store.pool().get().await?;
    let id = args.course_id;
    let course = queries::course(&client, id)
        .await?
        .with_context(|| format!("no course with id {id}"))?;
    let language = match args.lang.as_deref() {
        None => course.language.clone(),
        Some(l) => {
            parse_language_tag(l.trim()).map_err(|e| anyhow::anyhow!("invalid --lang: {e}"))?
        }
    };
    let tracks: Vec<(i32, serde_json::Value)> =
        queries::subtitles_of_course(&client, id, &language)
            .await?
            .into_iter()
            .filter(|(n, _)| args.lesson.is_none_or(|l| l == *n))
            .collect();
    if tracks.is_empty() {
        anyhow::bail!(
            "course {id} has no subtitles in {language}{}",
            args.lesson
                .map(|l| format!(" for lesson {l}"))
                .unwrap_or_default()
        );
    }
    let render = |cues: &serde_json::Value| -> anyhow::Result<String> {
        let parsed: Vec<Cue> =
            serde_json::from_value(cues.clone()).context("reading stored cues")?;
        Ok(match ext {
            "vtt" => webvtt(&parsed),
            "srt" => srt(&parsed),
            _ => serde_json::to_string_pretty(cues)? + "\n",
        })
    };
    match &args.out_dir {
        None => {
            for (_, cues) in &tracks {
                print!("{}", render(cues)?);
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (n, cues) in &tracks {
                let path = dir.join(format!("lesson-{n}.{language}.{ext}"));
                std::fs::write(&path, render(cues)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
