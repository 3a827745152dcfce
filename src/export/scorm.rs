//! The SCORM 1.2 package: `imsmanifest.xml` at the root of the zip, one SCO
//! per lesson, and the two shared assets.
//!
//! One SCO per lesson rather than a single SCO with its own navigation:
//! each lesson has its own quiz, so the LMS records a score and a status
//! per lesson (its gradebook and completion tracking see the whole course
//! lesson by lesson), its player draws the table of contents from the
//! manifest, and a learner can resume at any lesson. A single SCO would have
//! to fold every quiz into one score and re-implement navigation the LMS
//! already has.

use std::fmt::Write as _;

use super::html::{self, escape, Page, MASTERY_SCORE};
use super::model::CourseExport;
use super::PackageFile;

/// The manifest's name: at the root, where Moodle looks for it.
pub const MANIFEST: &str = "imsmanifest.xml";

/// Every file of the package, the manifest first.
pub fn files(course: &CourseExport) -> Vec<PackageFile> {
    let mut files = vec![
        PackageFile::new("style.css", html::STYLE_CSS.as_bytes().to_vec()),
        PackageFile::new("scorm.js", html::SCORM_JS.as_bytes().to_vec()),
    ];
    for l in &course.lessons {
        files.push(PackageFile::new(
            format!("{}.html", l.file_stem()),
            html::lesson_page(course, l, Page::Sco, "style.css", "scorm.js").into_bytes(),
        ));
    }
    let mut out = vec![PackageFile::new(MANIFEST, manifest(course).into_bytes())];
    out.extend(files);
    out
}

/// `imsmanifest.xml`: the SCORM 1.2 content-packaging namespaces (IMS CP
/// 1.1.2 and ADL CP 1.2; no `xsi:schemaLocation`, which would name XSD
/// files the package does not carry), one organization with an item per lesson, and a
/// resource per SCO listing its page, plus one asset resource with the
/// shared files the SCOs depend on. Every file of the package is listed.
pub fn manifest(course: &CourseExport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <manifest identifier=\"MANIFEST-{id}\" version=\"1.0\"\n  \
         xmlns=\"http://www.imsproject.org/xsd/imscp_rootv1p1p2\"\n  \
         xmlns:adlcp=\"http://www.adlnet.org/xsd/adlcp_rootv1p2\">\n  \
         <metadata>\n    <schema>ADL SCORM</schema>\n    <schemaversion>1.2</schemaversion>\n  </metadata>\n  \
         <organizations default=\"ORG-1\">\n    <organization identifier=\"ORG-1\">\n      \
         <title>{title}</title>\n",
        id = course.id.simple(),
        title = escape(&course.title),
    );
    for l in &course.lessons {
        let _ = write!(
            out,
            "      <item identifier=\"ITEM-{n}\" identifierref=\"RES-{n}\" isvisible=\"true\">\n        \
             <title>{title}</title>\n",
            n = l.number,
            title = escape(&l.title),
        );
        if !l.quiz.is_empty() {
            let _ = writeln!(
                out,
                "        <adlcp:masteryscore>{MASTERY_SCORE}</adlcp:masteryscore>"
            );
        }
        out.push_str("      </item>\n");
    }
    out.push_str("    </organization>\n  </organizations>\n  <resources>\n");
    for l in &course.lessons {
        let href = format!("{}.html", l.file_stem());
        let _ = write!(
            out,
            "    <resource identifier=\"RES-{n}\" type=\"webcontent\" adlcp:scormtype=\"sco\" href=\"{href}\">\n      \
             <file href=\"{href}\"/>\n      <dependency identifierref=\"RES-SHARED\"/>\n    </resource>\n",
            n = l.number,
            href = escape(&href),
        );
    }
    out.push_str(
        "    <resource identifier=\"RES-SHARED\" type=\"webcontent\" adlcp:scormtype=\"asset\">\n      \
         <file href=\"style.css\"/>\n      <file href=\"scorm.js\"/>\n    </resource>\n  \
         </resources>\n</manifest>\n",
    );
    out
}
