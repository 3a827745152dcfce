//! The packages' structure, checked without a database: the XML parses (and
//! `xmllint --noout` agrees), every file the manifest references is in the
//! package and every file in it is referenced, identifiers are unique, and
//! the Markdown keeps each lesson's text whole.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::domain::subtitles::Cue;
use crate::domain::{
    CourseStatus, Difficulty, ElementBody, InteractiveElement, LessonSection, QuizQuestion,
};

pub(crate) fn course() -> CourseExport {
    let lesson = |n: i32, title: &str, quiz: usize| {
        LessonExport {
        number: n,
        title: title.to_owned(),
        concepts: vec!["light".into()],
        objectives: vec!["Explain <light> & \"energy\"".into()],
        content_md: format!(
            "# {title}\n\nPlants turn *light* into sugar.\n\n```rust\nfn main() {{ println!(\"<b>\"); }}\n```\n\n\
             <script>alert(1)</script>\n\n## Summary\n\nLine one.\nLine two & more.\n"
        ),
        sections: vec![LessonSection {
            heading: "Summary".into(),
            body: "Line one.".into(),
        }],
        quiz: (0..quiz)
            .map(|i| QuizQuestion {
                question: format!("Question {i} <about> light?"),
                options: vec!["Sugar".into(), "Salt & pepper".into(), "Stone".into()],
                answer_index: 0,
                explanation: "Plants make sugar.".into(),
            })
            .collect(),
        elements: vec![
            InteractiveElement {
                id: format!("l{n}-code-1"),
                body: ElementBody::CodeBlock {
                    language: "python".into(),
                    code: "print('<hi>')".into(),
                    caption: "Hello".into(),
                    expected_output: Some("<hi>".into()),
                },
            },
            InteractiveElement {
                id: format!("l{n}-ex-1"),
                body: ElementBody::Exercise {
                    prompt: "Draw a **leaf**".into(),
                    hints: vec!["Green".into()],
                    solution: "A leaf.".into(),
                    difficulty: Difficulty::Beginner,
                },
            },
        ],
        sources: vec![json!({"title": "Botany", "url": "https://example.org/b"})],
        model: Some("offline".into()),
        subtitles: [(
            "fr".to_owned(),
            vec![Cue {
                start_ms: 0,
                end_ms: 1500,
                text: "Bonjour".into(),
            }],
        )]
        .into(),
    }
    };
    CourseExport {
        id: Uuid::new_v4(),
        user_id: Uuid::new_v4(),
        title: "Photosynthesis & <you>".into(),
        description: "How plants eat.".into(),
        slug: "photosynthesis-you".into(),
        topic: "photosynthesis".into(),
        grade_level: Some("8".into()),
        language: "en".into(),
        status: CourseStatus::Ready,
        author: Some("Ada".into()),
        tags: vec!["biology".into()],
        difficulty: Some(Difficulty::Beginner),
        prerequisites: vec![],
        learning_outcomes: vec!["Explain photosynthesis".into()],
        estimated_minutes: 30,
        model: Some("offline".into()),
        total_tokens: 10,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        generated_at: Some(Utc::now()),
        deleted_at: None,
        sources: vec![json!({"title": "Botany", "url": "https://example.org/b"})],
        lessons: vec![
            lesson(1, "What light does", 3),
            lesson(2, "Sugar", 2),
            lesson(3, "No quiz here", 0),
        ],
    }
}

/// The files of a zip, by name.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().unwrap().into_owned(), data)
        })
        .collect()
}

/// Checks a manifest-based package: parses every XML file (and runs
/// xmllint on it), compares the files referenced with those present, and
/// checks the identifiers are unique. Returns the manifest's document text.
pub(crate) fn check_package(files: &[(String, Vec<u8>)], namespace: &str) -> String {
    let names: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), files.len(), "duplicate names in the zip");
    assert_eq!(
        files[0].0, "imsmanifest.xml",
        "the manifest at the root, first"
    );
    for (name, bytes) in files {
        if name.ends_with(".xml") {
            let text = std::str::from_utf8(bytes).unwrap();
            roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            xmllint(name, bytes);
        }
    }
    let manifest = std::str::from_utf8(&files[0].1).unwrap().to_owned();
    let doc = roxmltree::Document::parse(&manifest).unwrap();
    assert_eq!(doc.root_element().tag_name().namespace(), Some(namespace));
    let mut ids = HashSet::new();
    let mut referenced = BTreeSet::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        if let Some(id) = node.attribute("identifier") {
            assert!(ids.insert(id.to_owned()), "identifier {id} twice");
        }
        if node.tag_name().name() == "file" {
            referenced.insert(node.attribute("href").unwrap().to_owned());
        }
    }
    for node in doc.descendants().filter(|n| n.is_element()) {
        if let Some(r) = node.attribute("identifierref") {
            assert!(ids.contains(r), "identifierref {r} names nothing");
        }
        if node.tag_name().name() == "resource" {
            if let Some(href) = node.attribute("href") {
                assert!(referenced.contains(href), "{href} not among the files");
            }
        }
    }
    let present: BTreeSet<String> = names
        .iter()
        .filter(|n| **n != "imsmanifest.xml")
        .map(|n| (*n).to_owned())
        .collect();
    assert_eq!(referenced, present, "files referenced = files present");
    manifest
}

fn xmllint(name: &str, bytes: &[u8]) {
    let dir = std::env::temp_dir().join(format!("coursegen-xml-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file.xml");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg(&path)
        .output()
        .expect("xmllint (libxml2-utils; scripts/test.sh installs it)");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "xmllint {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn zipped(format: ExportFormat, course: &CourseExport) -> Vec<(String, Vec<u8>)> {
    let bytes = archive::write_zip(&format.files(course), course.updated_at, Vec::new()).unwrap();
    unzip(&bytes)
}

#[test]
fn the_scorm_package_lists_every_file_in_a_valid_scorm12_manifest() {
    let course = course();
    let files = zipped(ExportFormat::Scorm12, &course);
    let manifest = check_package(&files, "http://www.imsproject.org/xsd/imscp_rootv1p1p2");
    let doc = roxmltree::Document::parse(&manifest).unwrap();
    let adlcp = "http://www.adlnet.org/xsd/adlcp_rootv1p2";
    let scos: Vec<_> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "resource")
        .filter(|n| n.attribute((adlcp, "scormtype")) == Some("sco"))
        .collect();
    assert_eq!(scos.len(), course.lessons.len(), "one SCO per lesson");
    assert!(manifest.contains("<schemaversion>1.2</schemaversion>"));
    for (name, bytes) in &files {
        if name.ends_with(".html") {
            let page = std::str::from_utf8(bytes).unwrap();
            assert!(
                !page.contains("http://") && !page.contains("src=\"https"),
                "{name}"
            );
            assert!(!page.contains("<script>alert"), "{name}: sanitised");
            assert!(page.contains("<script src=\"scorm.js\">"), "{name}");
        }
    }
}

#[test]
fn the_cartridge_is_cc11_with_a_qti_assessment_per_quiz() {
    let course = course();
    let files = zipped(ExportFormat::Cc, &course);
    let manifest = check_package(&files, "http://www.imsglobal.org/xsd/imsccv1p1/imscp_v1p1");
    let doc = roxmltree::Document::parse(&manifest).unwrap();
    let quizzes = doc
        .descendants()
        .filter(|n| n.attribute("type") == Some("imsqti_xmlv1p2/imscc_xmlv1p1/assessment"))
        .count();
    assert_eq!(quizzes, 2, "lessons with a quiz");
    let (_, qti) = files
        .iter()
        .find(|(n, _)| n.starts_with("quizzes/01-"))
        .unwrap();
    let qti = roxmltree::Document::parse(std::str::from_utf8(qti).unwrap()).unwrap();
    let items: Vec<_> = qti
        .descendants()
        .filter(|n| n.tag_name().name() == "item")
        .collect();
    assert_eq!(items.len(), 3);
    let idents: HashSet<_> = qti
        .descendants()
        .filter_map(|n| n.attribute("ident"))
        .collect();
    let all = qti
        .descendants()
        .filter(|n| n.attribute("ident").is_some())
        .count();
    assert_eq!(idents.len(), all, "QTI idents unique");
}

#[test]
fn markdown_keeps_each_lesson_text_whole() {
    let course = course();
    let files = ExportFormat::Markdown.files(&course);
    assert_eq!(files[0].path, "README.md");
    let readme = String::from_utf8(files[0].bytes.clone()).unwrap();
    for l in &course.lessons {
        let name = format!("{}.md", l.file_stem());
        assert!(readme.contains(&format!("]({name})")), "TOC links {name}");
        let file = files.iter().find(|f| f.path == name).unwrap();
        let text = std::str::from_utf8(&file.bytes).unwrap();
        assert!(
            text.starts_with(&l.content_md),
            "{name} keeps the lesson whole"
        );
    }
    assert_eq!(files.len(), course.lessons.len() + 1);
}

#[test]
fn course_json_holds_the_whole_course() {
    let course = course();
    let files = ExportFormat::Json.files(&course);
    let v: serde_json::Value = serde_json::from_slice(&files[0].bytes).unwrap();
    assert_eq!(v["id"], course.id.to_string());
    assert_eq!(v["lessons"].as_array().unwrap().len(), 3);
    assert_eq!(v["lessons"][0]["content_md"], course.lessons[0].content_md);
    assert_eq!(v["lessons"][0]["quiz"].as_array().unwrap().len(), 3);
    assert_eq!(v["lessons"][0]["elements"][0]["kind"], "code_block");
    assert_eq!(v["lessons"][0]["sections"][0]["heading"], "Summary");
    assert_eq!(v["sources"][0]["title"], "Botany");
    assert_eq!(v["author"], "Ada");
    assert_eq!(v["lessons"][0]["subtitles"]["fr"][0]["text"], "Bonjour");
}

#[test]
fn formats_parse_by_name_and_name_their_archives_after_the_slug() {
    for f in ExportFormat::ALL {
        assert_eq!(f.as_str().parse::<ExportFormat>().unwrap(), f);
    }
    assert!("pdf".parse::<ExportFormat>().is_err());
    assert_eq!(ExportFormat::Cc.archive_name("x"), "x.imscc");
    assert_eq!(ExportFormat::Scorm12.archive_name("x"), "x-scorm12.zip");
}
