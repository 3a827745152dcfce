//! What the OpenAPI document says of every operation alike, added in one
//! place so that no handler's annotation can forget it (those of endpoints
//! other modules add included):
//!
//! - 400 `ErrorBody`: any request can be refused at the edge (a NUL
//!   character, see [`super::untrusted`]; a malformed path or query);
//! - 401 `ErrorBody` with `WWW-Authenticate`, on every operation that names
//!   a security requirement;
//! - 413 and 415 on every operation with a request body;
//! - 503 `ErrorBody` with `Retry-After`: the database out of reach.
//!
//! The query parameters many operations share get their exact schema here
//! too ([`ParameterSchemas`]): bounds of `page` and `per_page`, the enums of
//! `status`, `sort`, `difficulty` and the subtitle `format`, from the types
//! that parse them.
//!
//! An event stream's response names the schema of its events' `data`; the
//! document served describes each event as OpenAPI 3.1 wants it (an object
//! with `event` and `data`, the JSON in `data` as `contentSchema`), see
//! [`document`].
//!
//! And the other way round: the methods the document lists for a route are
//! the `Allow` header of its 405 ([`allowed_methods`]).

use std::collections::HashMap;
use std::sync::OnceLock;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::SchemaFormat;
use utoipa::openapi::{
    Content, KnownFormat, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type,
};
use utoipa::{Modify, OpenApi};

/// The [`Modify`] adding the responses every operation shares.
pub(crate) struct CommonResponses;

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    )
}

fn header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

fn add(op: &mut Operation, status: &str, response: impl FnOnce() -> Response) {
    let responses = &mut op.responses.responses;
    match responses.get_mut(status) {
        Some(RefOr::T(existing)) if existing.description.is_empty() => {
            existing.description = response().description;
        }
        Some(_) => {}
        None => {
            responses.insert(status.to_owned(), RefOr::T(response()));
        }
    }
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for (_, op) in operations(item) {
                add(op, "400", || {
                    error_response(
                        "Refused input: `nul_character` (a NUL, U+0000, in the path, query, a \
                         header or the body), `invalid_path`, `invalid_query`, \
                         `invalid_request` or `invalid_body`",
                    )
                    .build()
                });
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add(op, "401", || {
                        error_response("No, or an invalid, bearer token")
                            .header("WWW-Authenticate", header("`Bearer`"))
                            .build()
                    });
                }
                if op.request_body.is_some() {
                    add(op, "413", || {
                        error_response("The body is over HTTP_MAX_BODY_BYTES").build()
                    });
                    add(op, "415", || {
                        error_response("The body is not application/json").build()
                    });
                }
                add(op, "503", || {
                    error_response("The database is out of reach; try again")
                        .header("Retry-After", header("Seconds to wait before trying again"))
                        .build()
                });
            }
        }
    }
}

/// The [`Modify`] giving shared query parameters their exact schema.
pub(crate) struct ParameterSchemas;

fn integer(min: i64, max: i64) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
        .into()
}

fn one_of<'a>(values: impl IntoIterator<Item = &'a str>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

impl Modify for ParameterSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use super::courses::subtitles::Format;
        use super::jobs::JobStatus;
        use crate::domain::{CourseStatus, Difficulty};
        use crate::projections::courses::queries::CourseOrder;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let jobs = path.starts_with("/api/v1/jobs");
            let export = path.ends_with("/export");
            let sources = path.starts_with("/api/v1/sources");
            for (_, op) in operations(item) {
                for param in op.parameters.iter_mut().flatten() {
                    if param.parameter_in != ParameterIn::Query {
                        continue;
                    }
                    let schema = match param.name.as_str() {
                        "page" => integer(1, super::courses::dto::MAX_PAGE),
                        "per_page" => integer(1, super::courses::dto::MAX_PER_PAGE),
                        "status" if jobs => one_of(JobStatus::ALL.map(JobStatus::as_str)),
                        "status" => one_of(CourseStatus::ALL.map(CourseStatus::as_str)),
                        "sort" => one_of(CourseOrder::KEYS),
                        "difficulty" => one_of(Difficulty::ALL.map(Difficulty::as_str)),
                        "format" if export => {
                            one_of(crate::export::ExportFormat::ALL.map(|f| f.as_str()))
                        }
                        "format" => one_of(Format::NAMES),
                        "q" if sources => ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(super::sources::MAX_SEARCH_CHARS))
                            .pattern(Some(r"^[^\x00-\x1f\x7f-\x9f]+$"))
                            .into(),
                        "q" => ObjectBuilder::new()
                            .schema_type(Type::String)
                            .max_length(Some(super::courses::dto::MAX_QUERY_CHARS))
                            .into(),
                        _ => continue,
                    };
                    param.schema = Some(RefOr::T(schema));
                }
            }
        }
    }
}

/// Every operation of a path item, with its method's name.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", item.get.as_mut()),
        ("PUT", item.put.as_mut()),
        ("POST", item.post.as_mut()),
        ("DELETE", item.delete.as_mut()),
        ("OPTIONS", item.options.as_mut()),
        ("HEAD", item.head.as_mut()),
        ("PATCH", item.patch.as_mut()),
        ("TRACE", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

/// The `Allow` header of a 405 on the route `pattern` (as actix names it,
/// e.g. `/api/v1/courses/{id}`): the methods the OpenAPI document lists for
/// it, or for `/api/v1` + `pattern` (the probes at the root); `None` for a
/// route the document does not know.
pub(crate) fn allowed_methods(pattern: &str) -> Option<&'static str> {
    static ALLOW: OnceLock<HashMap<String, String>> = OnceLock::new();
    let allow = ALLOW.get_or_init(|| {
        let mut doc = super::system::ApiDoc::openapi();
        doc.paths
            .paths
            .iter_mut()
            .map(|(path, item)| {
                let methods: Vec<&str> = operations(item).map(|(m, _)| m).collect();
                (path.clone(), methods.join(", "))
            })
            .collect()
    });
    allow
        .get(pattern)
        .or_else(|| allow.get(&format!("/api/v1{pattern}")))
        .map(String::as_str)
}

/// The OpenAPI document served at `/api/v1/openapi.json`: [`ApiDoc`]'s,
/// with each `text/event-stream` response described event by event (see
/// the module's header). Built once.
///
/// [`ApiDoc`]: super::system::ApiDoc
pub(crate) fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(super::system::ApiDoc::openapi())
            .expect("the document serializes");
        describe_events(&mut doc);
        describe_texts(&mut doc);
        doc
    })
}

/// Characters no text a client sends may hold: C0 and C1 controls (NUL
/// included), as `char::is_control` has them; the rules refuse them.
const NO_CONTROL: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";

/// [`NO_CONTROL`], and at least one character that is not white space.
const NON_BLANK: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";

/// The format of BCP-47 language tags (valid and registered ones only: the
/// rules check the subtags against the registry).
const LANGUAGE_FORMAT: &str = "bcp47";

/// Request schemas whose fields are texts a client writes.
const REQUEST_SCHEMAS: [&str; 3] = ["GenerateRequest", "MetadataEdit", "SubtitlesRequest"];

/// Query parameters that are free text the rules take as it is: searched,
/// never stored, so control characters are allowed there.
const FREE_QUERY: [&str; 1] = ["q"];

/// Gives every text a client sends what the rules say of it: language tags
/// their format, `difficulty` its enum, every other text [`NO_CONTROL`].
fn describe_texts(doc: &mut serde_json::Value) {
    if let Some(edit) = doc.pointer_mut("/components/schemas/MetadataEdit") {
        // An edit names at least one field (utoipa 5.5 renders its
        // `min_properties` as `maxProperties`, so it is said here).
        edit["minProperties"] = 1.into();
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas") {
        for name in REQUEST_SCHEMAS {
            if let Some(props) = schemas
                .pointer_mut(&format!("/{name}/properties"))
                .and_then(|p| p.as_object_mut())
            {
                for (field, schema) in props.iter_mut() {
                    describe_text(field, schema);
                    let item_chars = match field.as_str() {
                        "tags" => Some(crate::domain::metadata::MAX_TAG_CHARS),
                        "prerequisites" | "learning_outcomes" => {
                            Some(crate::domain::metadata::MAX_ITEM_CHARS)
                        }
                        _ => None,
                    };
                    if let (Some(max), Some(items)) = (item_chars, schema.get_mut("items")) {
                        items["maxLength"] = max.into();
                    }
                    // An edit's texts replace the old ones: blank is no value.
                    if name == "MetadataEdit" && schema["pattern"] == NO_CONTROL {
                        schema["pattern"] = NON_BLANK.into();
                    }
                    // An edit's list replaces the old one: it must hold an item.
                    if name == "MetadataEdit" && schema.get("items").is_some() {
                        schema["contains"] =
                            serde_json::json!({"type": "string", "pattern": r"\S"});
                    }
                }
            }
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
        for op in item.values_mut() {
            for param in op
                .get_mut("parameters")
                .and_then(|p| p.as_array_mut())
                .into_iter()
                .flatten()
            {
                if param["in"] != "query" {
                    continue;
                }
                let name = param["name"].as_str().unwrap_or_default().to_owned();
                if FREE_QUERY.contains(&name.as_str()) {
                    continue;
                }
                if let Some(schema) = param.get_mut("schema") {
                    describe_text(&name, schema);
                }
            }
        }
    }
}

fn is_string(schema: &serde_json::Value) -> bool {
    match &schema["type"] {
        serde_json::Value::String(t) => t == "string",
        serde_json::Value::Array(ts) => ts.iter().any(|t| t == "string"),
        _ => false,
    }
}

fn describe_text(name: &str, schema: &mut serde_json::Value) {
    if schema.get("items").is_some() {
        if let Some(items) = schema.get_mut("items") {
            describe_text(name, items);
        }
        return;
    }
    if !is_string(schema)
        || schema.get("format").is_some()
        || schema.get("enum").is_some()
        || schema.get("pattern").is_some()
    {
        return;
    }
    if name.contains("lang") {
        schema["format"] = LANGUAGE_FORMAT.into();
    } else if name == "difficulty" {
        let mut values: Vec<serde_json::Value> = crate::domain::Difficulty::ALL
            .iter()
            .map(|d| d.as_str().into())
            .collect();
        if schema["type"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "null"))
        {
            values.push(serde_json::Value::Null);
        }
        schema["enum"] = values.into();
    } else {
        schema["pattern"] = NO_CONTROL.into();
    }
}

/// Replaces the schema `S` of every `text/event-stream` response with that
/// of one event whose `data` is JSON matching `S`.
fn describe_events(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
        for op in item.values_mut() {
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
                continue;
            };
            for response in responses.values_mut() {
                let Some(stream) = response.pointer_mut("/content/text~1event-stream") else {
                    continue;
                };
                let Some(data) = stream.get("schema").cloned() else {
                    continue;
                };
                stream["schema"] = serde_json::json!({
                    "type": "object",
                    "description": "One server-sent event: its name and its JSON data",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string", "enum": [super::courses::progress::EVENT]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": data,
                        },
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> &'static serde_json::Value {
        document()
    }

    #[test]
    fn every_operation_declares_the_shared_answers() {
        for (path, item) in doc()["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let has = |s: &str| responses.contains_key(s);
                assert!(has("400") && has("503"), "{method} {path}");
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                assert_eq!(has("401"), secured, "{method} {path}");
                if op.get("requestBody").is_some() {
                    assert!(has("413") && has("415"), "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn sources_and_export_parameters_say_what_is_required_and_allowed() {
        let params = |path: &str| doc()["paths"][path]["get"]["parameters"].clone();
        let search = params("/api/v1/sources/search");
        let q = search
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "q")
            .unwrap();
        assert_eq!(q["required"], true, "{q}");
        assert_eq!(q["in"], "query", "{q}");
        let export = params("/api/v1/courses/{id}/export");
        let format = export
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "format")
            .unwrap();
        assert_eq!(
            format["schema"]["enum"],
            serde_json::json!(["json", "markdown", "scorm12", "cc"])
        );
        let upload = &doc()["paths"]["/api/v1/sources"]["post"]["requestBody"]["content"]
            ["multipart/form-data"]["schema"];
        assert_eq!(upload["$ref"], "#/components/schemas/UploadForm");
        let form = &doc()["components"]["schemas"]["UploadForm"];
        assert_eq!(form["required"], serde_json::json!(["file"]), "{form}");
        assert_eq!(form["properties"]["file"]["format"], "binary", "{form}");
    }

    #[test]
    fn shared_query_parameters_have_their_bounds_and_enums() {
        let param = |path: &str, name: &str| {
            doc()["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()["schema"]
                .clone()
        };
        assert_eq!(param("/api/v1/courses", "page")["minimum"], 1);
        assert_eq!(param("/api/v1/courses", "per_page")["maximum"], 100);
        assert_eq!(param("/api/v1/courses", "status")["enum"][2], "READY");
        assert_eq!(param("/api/v1/jobs", "status")["enum"][2], "completed");
        assert_eq!(param("/api/v1/courses", "sort")["enum"][1], "-created_at");
        assert!(param("/api/v1/courses", "q").get("pattern").is_none());
        assert!(param("/api/v1/courses", "author").get("pattern").is_some());
    }

    #[test]
    fn request_bodies_say_what_is_required_and_bounded() {
        let schemas = &doc()["components"]["schemas"];
        let generate = &schemas["GenerateRequest"];
        assert!(generate["required"]
            .as_array()
            .unwrap()
            .contains(&"topic".into()));
        assert_eq!(generate["properties"]["num_lessons"]["minimum"], 1);
        assert_eq!(generate["properties"]["language"]["format"], "bcp47");
        assert_eq!(
            schemas["MetadataEdit"]["minProperties"], 1,
            "{}",
            schemas["MetadataEdit"]
        );
    }

    #[test]
    fn an_event_stream_is_described_event_by_event() {
        let schema = &doc()["paths"]["/api/v1/courses/{id}/progress"]["get"]["responses"]["200"]
            ["content"]["text/event-stream"]["schema"];
        assert_eq!(schema["properties"]["event"]["enum"][0], "progress");
        assert_eq!(
            schema["properties"]["data"]["contentSchema"]["$ref"],
            "#/components/schemas/Progress"
        );
    }

    #[test]
    fn a_405_allows_what_the_document_lists() {
        assert_eq!(
            allowed_methods("/api/v1/courses/{id}"),
            Some("GET, DELETE, PATCH")
        );
        assert_eq!(allowed_methods("/health"), Some("GET"));
        assert_eq!(allowed_methods("/nowhere"), None);
    }
}
