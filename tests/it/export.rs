//! Export: the zip download and its tenant rules, `coursegen export`, the
//! SCORM runtime in a real (headless) browser, and the EXPORT_DIR backup:
//! written, moved away on delete, back on restore, and whole after a crash.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{Overrides, TestApp, JWT_SECRET};
use crate::helpers::eventually;

fn token(user: Uuid) -> String {
    let claims = json!({"sub": user, "exp": chrono::Utc::now().timestamp() + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A fresh directory under the system's temporary one.
fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coursegen-{what}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Requests a `lessons`-lesson course and waits until it is READY; returns
/// its id and slug.
async fn ready_course(app: &TestApp, token: &str, topic: &str, lessons: u8) -> (Uuid, String) {
    let r = app
        .post("/api/v1/courses/generate", token)
        .json(&json!({"topic": topic, "num_lessons": lessons}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id: Uuid = r.json::<Value>().await.unwrap()["course_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = eventually(
        "the course to be READY",
        Duration::from_secs(60),
        || async {
            let (_, body) = app.get_json(&format!("/api/v1/courses/{id}"), token).await;
            // READY in the read model (not only in the log the API falls back on).
            (body["status"] == "READY" && body["slug"].is_string()).then_some(body)
        },
    )
    .await;
    (id, body["slug"].as_str().unwrap().to_owned())
}

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

fn xmllint(bytes: &[u8]) {
    let dir = temp_dir("xmllint");
    let path = dir.join("file.xml");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg(&path)
        .output()
        .expect("xmllint (libxml2-utils; scripts/test.sh installs it)");
    std::fs::remove_dir_all(dir).unwrap();
    assert!(
        out.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The structure checks of a manifest package: the manifest at the root in
/// `namespace`, every XML file well-formed (roxmltree and xmllint), every
/// file referenced present and every file present referenced, identifiers
/// unique and every reference resolving.
fn check_package(files: &[(String, Vec<u8>)], namespace: &str) {
    let names: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), files.len(), "a name twice in the zip");
    let manifest = files
        .iter()
        .find(|(n, _)| n == "imsmanifest.xml")
        .expect("imsmanifest.xml at the root");
    for (name, bytes) in files {
        if name.ends_with(".xml") {
            roxmltree::Document::parse(std::str::from_utf8(bytes).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            xmllint(bytes);
        }
    }
    let text = std::str::from_utf8(&manifest.1).unwrap();
    let doc = roxmltree::Document::parse(text).unwrap();
    assert_eq!(doc.root_element().tag_name().namespace(), Some(namespace));
    let mut ids = HashSet::new();
    let mut referenced = BTreeSet::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        if let Some(id) = node.attribute("identifier") {
            assert!(ids.insert(id), "identifier {id} twice");
        }
        if node.tag_name().name() == "file" {
            referenced.insert(node.attribute("href").unwrap());
        }
    }
    for node in doc.descendants() {
        if let Some(r) = node.attribute("identifierref") {
            assert!(ids.contains(r), "identifierref {r} names nothing");
        }
    }
    let present: BTreeSet<&str> = names
        .iter()
        .copied()
        .filter(|n| *n != "imsmanifest.xml")
        .collect();
    assert_eq!(referenced, present, "files referenced = files present");
}

#[actix_web::test]
async fn the_export_endpoint_streams_each_format_as_a_zip_named_after_the_slug() {
    let app = TestApp::spawn(Overrides::default()).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let (id, slug) = ready_course(&app, &token(alice), "Tide pools", 2).await;
    let path = format!("/api/v1/courses/{id}/export");

    let mut packages = BTreeMap::new();
    for format in ["json", "markdown", "scorm12", "cc"] {
        let r = app
            .get(&format!("{path}?format={format}"), &token(alice))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{format}");
        assert_eq!(r.headers()["content-type"], "application/zip");
        let disposition = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        let name = if format == "cc" {
            format!("{slug}.imscc")
        } else {
            format!("{slug}-{format}.zip")
        };
        assert_eq!(disposition, format!("attachment; filename=\"{name}\""));
        packages.insert(format, unzip(&r.bytes().await.unwrap()));
    }
    check_package(
        &packages["scorm12"],
        "http://www.imsproject.org/xsd/imscp_rootv1p1p2",
    );
    check_package(
        &packages["cc"],
        "http://www.imsglobal.org/xsd/imsccv1p1/imscp_v1p1",
    );

    // The Markdown keeps each lesson's text whole, as the API serves it.
    let course: Value = serde_json::from_slice(&packages["json"][0].1).unwrap();
    assert_eq!(course["id"], id.to_string());
    let lessons = course["lessons"].as_array().unwrap();
    assert_eq!(lessons.len(), 2);
    for lesson in lessons {
        let n = lesson["number"].as_i64().unwrap();
        let r = app
            .get(&format!("/api/v1/courses/{id}/lessons/{n}"), &token(alice))
            .header("accept", "text/markdown")
            .send()
            .await
            .unwrap();
        let served = r.text().await.unwrap();
        assert_eq!(lesson["content_md"], served);
        let (_, md) = packages["markdown"]
            .iter()
            .find(|(name, _)| name.starts_with(&format!("{n:02}-")))
            .unwrap();
        assert!(std::str::from_utf8(md).unwrap().starts_with(&served));
    }

    // Tenant rules and bad input: as for the course itself.
    let r = app.get(&path, &token(bob)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .get_json(&format!("{path}?format=pdf"), &token(alice))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("scorm12"));
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/courses/{id}")))
        .bearer_auth(token(alice))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, body) = app.get_json(&path, &token(alice)).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
}

#[actix_web::test]
async fn cli_export_writes_every_ready_course_or_says_why_not() {
    let app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let (a, slug_a) = ready_course(&app, &token(user), "Volcanoes", 1).await;
    let (_, slug_b) = ready_course(&app, &token(user), "Glaciers", 1).await;
    let out = temp_dir("cli-export");
    let dir = out.to_str().unwrap();

    let run = app.cli(&["export", "--all", "--format", "scorm12", "--out", dir]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let printed: BTreeSet<String> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = [&slug_a, &slug_b]
        .iter()
        .map(|s| format!("{dir}/{s}-scorm12.zip"))
        .collect();
    assert_eq!(printed, expected);
    for path in &expected {
        check_package(
            &unzip(&std::fs::read(path).unwrap()),
            "http://www.imsproject.org/xsd/imscp_rootv1p1p2",
        );
    }

    let run = app.cli(&["export", &a.to_string(), "--format", "cc", "--out", dir]);
    assert!(run.status.success());
    assert!(out.join(format!("{slug_a}.imscc")).exists());

    let unknown = Uuid::new_v4().to_string();
    let run = app.cli(&["export", &unknown, "--out", dir]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("no course with id"));
    let run = app.cli(&["export", &a.to_string(), "--format", "pdf"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("json, markdown, scorm12 or cc"));
    std::fs::remove_dir_all(out).unwrap();
}

/// The LMS of the runtime test: a stub `window.API` recording every call,
/// framing the SCO, answering its quiz (the first `RIGHT` questions right,
/// every other one wrong) and printing the calls and the stored values into
/// `#log`.
const LMS_STUB: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>LMS stub</title>
<script>
var calls = [];
var store = {"cmi.core.lesson_status": "not attempted"};
function record(name, args, result) { calls.push({call: name, args: args}); return result; }
window.API = {
  LMSInitialize: function (a) { return record("LMSInitialize", [a], "true"); },
  LMSFinish: function (a) { return record("LMSFinish", [a], "true"); },
  LMSGetValue: function (k) { return record("LMSGetValue", [k], store[k] || ""); },
  LMSSetValue: function (k, v) { store[k] = v; return record("LMSSetValue", [k, v], "true"); },
  LMSCommit: function (a) { return record("LMSCommit", [a], "true"); },
  LMSGetLastError: function () { return "0"; },
  LMSGetErrorString: function () { return ""; },
  LMSGetDiagnostic: function () { return ""; }
};
function answer() {
  var doc = document.getElementById("sco").contentDocument;
  var qs = doc.querySelectorAll("fieldset.question");
  for (var i = 0; i < qs.length; i++) {
    var right = Number(qs[i].getAttribute("data-answer"));
    var inputs = qs[i].querySelectorAll("input");
    inputs[i < RIGHT ? right : (right + 1) % inputs.length].click();
  }
  doc.getElementById("submit-quiz").click();
  document.getElementById("log").textContent =
    JSON.stringify({questions: qs.length, calls: calls, store: store});
}
</script></head>
<body><pre id="log">not run</pre>
<iframe id="sco" src="SCO_PAGE" onload="answer()"></iframe>
</body></html>"#;

/// Opens the SCO `page` of the package in `dir` framed by the stub LMS in
/// headless Chromium, answering `right` questions right; returns the log:
/// the number of questions, the API calls as `Name(args)`, the stored values.
fn run_sco(dir: &Path, page: &str, right: usize) -> (u64, Vec<String>, Value) {
    let lms = dir.join(format!("lms-{right}.html"));
    std::fs::write(
        &lms,
        LMS_STUB
            .replace("SCO_PAGE", &format!("pkg/{page}"))
            .replace("RIGHT", &right.to_string()),
    )
    .unwrap();
    let profile = dir.join(format!("profile-{right}"));
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // The stub and the SCO are both file:// pages: one origin.
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", lms.display()))
        .output()
        .expect("chromium (scripts/test.sh installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = dom
        .split("<pre id=\"log\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no log in the page: {dom}"));
    let log: Value = serde_json::from_str(&log.replace("&quot;", "\"").replace("&amp;", "&"))
        .unwrap_or_else(|e| panic!("{e}: {log}"));
    let calls = log["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let args: Vec<&str> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            format!("{}({})", c["call"].as_str().unwrap(), args.join(", "))
        })
        .collect();
    (
        log["questions"].as_u64().unwrap(),
        calls,
        log["store"].clone(),
    )
}

#[actix_web::test]
async fn the_scorm_quiz_reports_score_and_status_through_the_runtime_api() {
    let app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let (id, _) = ready_course(&app, &token(user), "Bees", 1).await;
    let r = app
        .get(
            &format!("/api/v1/courses/{id}/export?format=scorm12"),
            &token(user),
        )
        .send()
        .await
        .unwrap();
    let files = unzip(&r.bytes().await.unwrap());
    let dir = temp_dir("scorm-runtime");
    for (name, bytes) in &files {
        let path = dir.join("pkg").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let page = files
        .iter()
        .map(|(n, _)| n.as_str())
        .find(|n| n.starts_with("01-") && n.ends_with(".html"))
        .unwrap();

    // One question right: failed, with its share of the score.
    let (questions, calls, store) = run_sco(&dir, page, 1);
    eprintln!("recorded SCORM API calls:\n{}", calls.join("\n"));
    assert!(questions >= 2, "a quiz to answer");
    let score = (100.0 / questions as f64).round() as u64;
    let at = |call: &str| {
        calls
            .iter()
            .position(|c| c == call)
            .unwrap_or_else(|| panic!("{call} not among {calls:?}"))
    };
    assert_eq!(at("LMSInitialize()"), 0);
    let commit = at("LMSCommit()");
    assert!(at(&format!("LMSSetValue(cmi.core.score.raw, {score})")) < commit);
    assert!(at("LMSSetValue(cmi.core.lesson_status, failed)") < commit);
    assert!(commit < at("LMSFinish()"));
    assert_eq!(store["cmi.core.score.raw"], score.to_string());
    assert_eq!(store["cmi.core.lesson_status"], "failed");

    // Every question right: passed with 100.
    let (_, calls, store) = run_sco(&dir, page, questions as usize);
    assert_eq!(store["cmi.core.score.raw"], "100", "{calls:?}");
    assert_eq!(store["cmi.core.lesson_status"], "passed");
    assert_eq!(calls.last().unwrap(), "LMSFinish()");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The files of a directory: name to text.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        out.insert(
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read_to_string(entry.path()).unwrap(),
        );
    }
    out
}

/// What `coursegen export` writes for the course in json and markdown: what
/// its backup directory must hold, byte for byte.
fn expected_backup(app: &TestApp, id: Uuid) -> BTreeMap<String, String> {
    let out = temp_dir("expected-backup");
    let mut files = BTreeMap::new();
    for format in ["json", "markdown"] {
        let run = app.cli(&[
            "export",
            &id.to_string(),
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success());
        let path = String::from_utf8(run.stdout).unwrap();
        files.extend(
            unzip(&std::fs::read(path.trim()).unwrap())
                .into_iter()
                .map(|(name, bytes)| (name, String::from_utf8(bytes).unwrap())),
        );
    }
    std::fs::remove_dir_all(out).unwrap();
    files
}

#[actix_web::test]
async fn the_backup_follows_a_course_through_delete_and_restore() {
    let export_dir = temp_dir("backup");
    let app = TestApp::spawn(Overrides::default().set("--export-dir", export_dir.display())).await;
    let user = Uuid::new_v4();
    let (id, slug) = ready_course(&app, &token(user), "Lighthouses", 2).await;
    let dir = export_dir.join(&slug);
    let expected = expected_backup(&app, id);
    assert_eq!(expected.len(), 4, "course.json, README.md, two lessons");
    eventually("the backup", Duration::from_secs(30), || async {
        (dir.exists() && tree(&dir) == expected).then_some(())
    })
    .await;

    let delete = |restore: bool| {
        let req = if restore {
            app.post(&format!("/api/v1/courses/{id}/restore"), &token(user))
        } else {
            app.client
                .delete(app.url(&format!("/api/v1/courses/{id}")))
                .bearer_auth(token(user))
        };
        async move { assert_eq!(req.send().await.unwrap().status(), StatusCode::OK) }
    };
    delete(false).await;
    let deleted = export_dir.join(".deleted").join(&slug);
    eventually("the move to .deleted", Duration::from_secs(30), || async {
        (!dir.exists() && deleted.exists()).then_some(())
    })
    .await;
    assert_eq!(tree(&deleted), expected);
    delete(true).await;
    // Restored: written again as the course is now (deleted and restored at).
    let expected = expected_backup(&app, id);
    eventually("the restore", Duration::from_secs(30), || async {
        (dir.exists() && !deleted.exists() && tree(&dir) == expected).then_some(())
    })
    .await;
    drop(app);
    std::fs::remove_dir_all(export_dir).unwrap();
}

#[actix_web::test]
async fn a_crash_mid_backup_leaves_no_half_written_course_directory() {
    let app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let (id, slug) = ready_course(&app, &token(user), "Coral reefs", 3).await;
    let expected = expected_backup(&app, id);
    let export_dir = temp_dir("backup-crash");
    let serve = |abort_after: Option<usize>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coursegen"));
        command
            .arg("serve")
            .args(app.flags())
            .arg(format!("--export-dir={}", export_dir.display()))
            .env("DATABASE_URL", app.db.url())
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(n) = abort_after {
            command.env(coursegen::export::backup::ABORT_AFTER_FILES, n.to_string());
        }
        command.spawn().unwrap()
    };

    // Killed after two of the course's five files.
    let mut first = serve(Some(2));
    let status = eventually("the crash", Duration::from_secs(60), || {
        let status = first.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(!status.success(), "killed, not exited");
    let dir = export_dir.join(&slug);
    assert!(!dir.exists(), "no half-written course directory");
    let partial: Vec<_> = std::fs::read_dir(export_dir.join(".tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(partial.len(), 1, "the interrupted write, aside");
    assert_eq!(tree(&partial[0]).len(), 2);

    // After a restart: the course whole, the leftovers gone.
    let mut second = serve(None);
    eventually(
        "the backup after the restart",
        Duration::from_secs(60),
        || async { dir.exists().then_some(()) },
    )
    .await;
    assert_eq!(tree(&dir), expected);
    assert_eq!(
        std::fs::read_dir(export_dir.join(".tmp")).unwrap().count(),
        0
    );
    let _ = second.kill();
    let _ = second.wait();
    std::fs::remove_dir_all(export_dir).unwrap();
}

#[actix_web::test]
async fn replay_rebuilds_the_backup_and_moves_what_belongs_to_no_course_away() {
    let app = TestApp::spawn(Overrides::default()).await;
    let user = Uuid::new_v4();
    let (id, slug) = ready_course(&app, &token(user), "Meteorites", 1).await;
    let export_dir = temp_dir("backup-replay");
    std::fs::create_dir_all(export_dir.join("stale-course")).unwrap();
    let dir = export_dir.display().to_string();

    let run = app.cli(&["replay", "--projection", "file_backup"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("EXPORT_DIR"));

    let run = app.cli(&[
        "replay",
        "--projection",
        "file_backup",
        "--export-dir",
        &dir,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(tree(&export_dir.join(&slug)), expected_backup(&app, id));
    assert!(!export_dir.join("stale-course").exists());
    assert!(export_dir.join(".deleted/stale-course").exists());
    std::fs::remove_dir_all(export_dir).unwrap();
}
