//! The IMS Common Cartridge, version 1.1: the manifest, the web content
//! (an overview page and one page per lesson) and each lesson's quiz as a
//! QTI 1.2 assessment.
//!
//! Why 1.1: Moodle's importer recognises the 1.0 and 1.1 manifest
//! namespaces only, and Canvas imports 1.0 to 1.3, so a 1.1 cartridge is
//! the one package both take (1.3 would shut Moodle out; 1.0 lacks nothing
//! used here but is older than what either platform writes).

use std::fmt::Write as _;

use super::html::{self, escape, Page};
use super::markdown::letter;
use super::model::{CourseExport, LessonExport};
use super::PackageFile;

/// The manifest's name, at the root of the cartridge.
pub const MANIFEST: &str = "imsmanifest.xml";

/// The resource type of a CC 1.1 QTI assessment.
const ASSESSMENT: &str = "imsqti_xmlv1p2/imscc_xmlv1p1/assessment";

fn page_href(l: &LessonExport) -> String {
    format!("web_resources/{}.html", l.file_stem())
}

fn quiz_href(l: &LessonExport) -> String {
    format!("quizzes/{}/assessment.xml", l.file_stem())
}

/// Every file of the cartridge, the manifest first.
pub fn files(course: &CourseExport) -> Vec<PackageFile> {
    let mut out = vec![
        PackageFile::new(MANIFEST, manifest(course).into_bytes()),
        PackageFile::new(
            "web_resources/style.css",
            html::STYLE_CSS.as_bytes().to_vec(),
        ),
        PackageFile::new(
            "web_resources/index.html",
            html::overview_page(course, "style.css").into_bytes(),
        ),
    ];
    for l in &course.lessons {
        out.push(PackageFile::new(
            page_href(l),
            html::lesson_page(course, l, Page::Web, "style.css", "").into_bytes(),
        ));
        if !l.quiz.is_empty() {
            out.push(PackageFile::new(
                quiz_href(l),
                assessment(course, l).into_bytes(),
            ));
        }
    }
    out
}

/// `imsmanifest.xml` in the CC 1.1 namespaces.
pub fn manifest(course: &CourseExport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <manifest identifier=\"MANIFEST-{id}\"\n  \
         xmlns=\"http://www.imsglobal.org/xsd/imsccv1p1/imscp_v1p1\"\n  \
         xmlns:lomimscc=\"http://ltsc.ieee.org/xsd/imsccv1p1/LOM/manifest\">\n  \
         <metadata>\n    <schema>IMS Common Cartridge</schema>\n    <schemaversion>1.1.0</schemaversion>\n    \
         <lomimscc:lom>\n      <lomimscc:general>\n        <lomimscc:title>\n          \
         <lomimscc:string language=\"{lang}\">{title}</lomimscc:string>\n        </lomimscc:title>\n        \
         <lomimscc:description>\n          <lomimscc:string language=\"{lang}\">{description}</lomimscc:string>\n        \
         </lomimscc:description>\n      </lomimscc:general>\n    </lomimscc:lom>\n  </metadata>\n  \
         <organizations>\n    <organization identifier=\"ORG-1\" structure=\"rooted-hierarchy\">\n      \
         <item identifier=\"ROOT\">\n        <item identifier=\"ITEM-OVERVIEW\" identifierref=\"RES-OVERVIEW\">\n          \
         <title>Overview</title>\n        </item>\n",
        id = course.id.simple(),
        lang = escape(&course.language),
        title = escape(&course.title),
        description = escape(&course.description),
    );
    for l in &course.lessons {
        let n = l.number;
        let _ = write!(
            out,
            "        <item identifier=\"ITEM-{n}\">\n          <title>{title}</title>\n          \
             <item identifier=\"ITEM-{n}-PAGE\" identifierref=\"RES-{n}-PAGE\">\n            \
             <title>{title}</title>\n          </item>\n",
            title = escape(&l.title),
        );
        if !l.quiz.is_empty() {
            let _ = write!(
                out,
                "          <item identifier=\"ITEM-{n}-QUIZ\" identifierref=\"RES-{n}-QUIZ\">\n            \
                 <title>Quiz: {title}</title>\n          </item>\n",
                title = escape(&l.title),
            );
        }
        out.push_str("        </item>\n");
    }
    out.push_str(
        "      </item>\n    </organization>\n  </organizations>\n  <resources>\n    \
         <resource identifier=\"RES-STYLE\" type=\"webcontent\">\n      \
         <file href=\"web_resources/style.css\"/>\n    </resource>\n    \
         <resource identifier=\"RES-OVERVIEW\" type=\"webcontent\" href=\"web_resources/index.html\">\n      \
         <file href=\"web_resources/index.html\"/>\n      <dependency identifierref=\"RES-STYLE\"/>\n    </resource>\n",
    );
    for l in &course.lessons {
        let n = l.number;
        let href = escape(&page_href(l));
        let _ = write!(
            out,
            "    <resource identifier=\"RES-{n}-PAGE\" type=\"webcontent\" href=\"{href}\">\n      \
             <file href=\"{href}\"/>\n      <dependency identifierref=\"RES-STYLE\"/>\n    </resource>\n"
        );
        if !l.quiz.is_empty() {
            let _ = write!(
                out,
                "    <resource identifier=\"RES-{n}-QUIZ\" type=\"{ASSESSMENT}\">\n      \
                 <file href=\"{}\"/>\n    </resource>\n",
                escape(&quiz_href(l))
            );
        }
    }
    out.push_str("  </resources>\n</manifest>\n");
    out
}

fn field(out: &mut String, indent: &str, label: &str, entry: &str) {
    let _ = writeln!(
        out,
        "{indent}<qtimetadatafield><fieldlabel>{label}</fieldlabel><fieldentry>{entry}</fieldentry></qtimetadatafield>"
    );
}

/// A lesson's quiz as a CC 1.1 QTI 1.2 assessment of single-answer
/// multiple-choice items (`cc.multiple_choice.v0p1`).
pub fn assessment(course: &CourseExport, l: &LessonExport) -> String {
    let n = l.number;
    let mut out = String::new();
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <questestinterop xmlns=\"http://www.imsglobal.org/xsd/ims_qtiasiv1p2\">\n  \
         <assessment ident=\"QUIZ-{n}\" title=\"{title}\">\n    <qtimetadata>\n",
        title = escape(&format!("{}: {}", course.title, l.title)),
    );
    field(&mut out, "      ", "cc_profile", "cc.exam.v0p1");
    field(&mut out, "      ", "qmd_assessmenttype", "Examination");
    field(&mut out, "      ", "cc_maxattempts", "unlimited");
    let _ = writeln!(
        out,
        "    </qtimetadata>\n    <section ident=\"QUIZ-{n}-SECTION\">"
    );
    for (i, q) in l.quiz.iter().enumerate() {
        let item = format!("QUIZ-{n}-Q{}", i + 1);
        let _ = write!(
            out,
            "      <item ident=\"{item}\" title=\"Question {}\">\n        <itemmetadata>\n          <qtimetadata>\n",
            i + 1
        );
        field(
            &mut out,
            "            ",
            "cc_profile",
            "cc.multiple_choice.v0p1",
        );
        field(&mut out, "            ", "cc_weighting", "1");
        let _ = write!(
            out,
            "          </qtimetadata>\n        </itemmetadata>\n        <presentation>\n          \
             <material><mattext texttype=\"text/plain\">{}</mattext></material>\n          \
             <response_lid ident=\"{item}-R\" rcardinality=\"Single\">\n            <render_choice>\n",
            escape(&q.question)
        );
        for (j, option) in q.options.iter().enumerate() {
            let _ = writeln!(
                out,
                "              <response_label ident=\"{item}-{}\"><material><mattext texttype=\"text/plain\">{}</mattext></material></response_label>",
                letter(j),
                escape(option)
            );
        }
        let answer = usize::try_from(q.answer_index).unwrap_or(usize::MAX);
        let _ = write!(
            out,
            "            </render_choice>\n          </response_lid>\n        </presentation>\n        \
             <resprocessing>\n          <outcomes><decvar varname=\"SCORE\" vartype=\"Decimal\" minvalue=\"0\" maxvalue=\"100\"/></outcomes>\n          \
             <respcondition continue=\"No\">\n            <conditionvar><varequal respident=\"{item}-R\">{item}-{}</varequal></conditionvar>\n            \
             <setvar varname=\"SCORE\" action=\"Set\">100</setvar>\n            \
             <displayfeedback feedbacktype=\"Response\" linkrefid=\"{item}-FB\"/>\n          </respcondition>\n          \
             <respcondition continue=\"Yes\">\n            <conditionvar><other/></conditionvar>\n            \
             <displayfeedback feedbacktype=\"Response\" linkrefid=\"{item}-FB\"/>\n          </respcondition>\n        \
             </resprocessing>\n        <itemfeedback ident=\"{item}-FB\">\n          \
             <flow_mat><material><mattext texttype=\"text/plain\">{}</mattext></material></flow_mat>\n        </itemfeedback>\n      </item>\n",
            letter(answer),
            escape(&q.explanation)
        );
    }
    out.push_str("    </section>\n  </assessment>\n</questestinterop>\n");
    out
}
