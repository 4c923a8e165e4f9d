//! The API reference page at `/api/v1/docs`, rendered by pglab from its
//! own OpenAPI document (no script, no CDN): every operation by tag with
//! its parameters, body, answers and who may call it, then every shape.

use crate::web::session::MaybeSession;
use crate::web::{AppState, Nav, WebError};
use askama::Template;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

pub struct Param {
    pub name: String,
    pub place: String,
    pub ty: String,
    pub required: bool,
    pub description: String,
}

pub struct Answer {
    pub status: String,
    pub description: String,
    pub ty: String,
}

pub struct Operation {
    pub anchor: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: String,
    pub auth: String,
    pub params: Vec<Param>,
    pub body: Option<String>,
    pub answers: Vec<Answer>,
}

pub struct Group {
    pub name: String,
    pub description: String,
    pub operations: Vec<Operation>,
}

pub struct Field {
    pub name: String,
    pub ty: String,
    pub required: bool,
    pub description: String,
}

pub struct Shape {
    pub name: String,
    pub description: String,
    pub fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "api_docs.html")]
struct DocsPage {
    nav: Option<Nav>,
    title: String,
    version: String,
    intro: String,
    groups: Vec<Group>,
    shapes: Vec<Shape>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A schema in words: a shape's name, `T[]`, `string (date-time)`,
/// `integer or null`, ...
fn type_of(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    if let Some(any) = s.get("oneOf").or_else(|| s.get("anyOf")) {
        let parts: Vec<String> = any.as_array().into_iter().flatten().map(type_of).collect();
        return parts.join(" or ");
    }
    let base = match s.get("type") {
        Some(Value::Array(types)) => types
            .iter()
            .map(|t| one_type(s, t.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(" or "),
        Some(t) => one_type(s, t.as_str().unwrap_or("")),
        None => "any".into(),
    };
    match s.get("enum").and_then(Value::as_array) {
        Some(values) => format!(
            "{base}: {}",
            values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => base,
    }
}

fn one_type(s: &Value, t: &str) -> String {
    match t {
        "array" => format!("{}[]", s.get("items").map_or("any".into(), type_of)),
        "object" if s.get("additionalProperties").is_some() => "map of string".into(),
        "" => "any".into(),
        other => match s.get("format").and_then(Value::as_str) {
            Some(f) if other != "null" => format!("{other} ({f})"),
            _ => other.to_string(),
        },
    }
}

fn body_of(content: &Value) -> String {
    content
        .as_object()
        .into_iter()
        .flatten()
        .map(|(media, c)| match c.get("schema") {
            Some(s) => format!("{} ({media})", type_of(s)),
            None => media.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn operation(path: &str, method: &str, op: &Value, default_auth: &str) -> Operation {
    let auth = match op.get("security").and_then(Value::as_array) {
        Some(list)
            if list
                .iter()
                .all(|s| s.as_object().is_some_and(|o| o.is_empty())) =>
        {
            "none".to_string()
        }
        Some(list) => list
            .iter()
            .flat_map(|s| s.as_object().into_iter().flatten().map(|(k, _)| k.clone()))
            .collect::<Vec<_>>()
            .join(" or "),
        None => default_auth.to_string(),
    };
    let params = op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| Param {
            name: text(&p["name"]),
            place: text(&p["in"]),
            ty: p.get("schema").map_or_else(String::new, type_of),
            required: p["required"].as_bool().unwrap_or(false),
            description: text(&p["description"]),
        })
        .collect();
    let answers = op["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, r)| Answer {
            status: status.clone(),
            description: text(&r["description"]),
            ty: r.get("content").map_or_else(String::new, body_of),
        })
        .collect();
    Operation {
        anchor: text(&op["operationId"]),
        method: method.to_uppercase(),
        path: path.to_string(),
        summary: text(&op["summary"]),
        description: crate::web::markdown::to_html(&text(&op["description"])),
        auth,
        params,
        body: op
            .get("requestBody")
            .and_then(|b| b.get("content"))
            .map(body_of),
        answers,
    }
}

fn groups(doc: &Value) -> Vec<Group> {
    let default_auth = "token";
    let mut groups: Vec<Group> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| Group {
            name: text(&t["name"]),
            description: text(&t["description"]),
            operations: vec![],
        })
        .collect();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in ["get", "put", "post", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let tag = op["tags"][0].as_str().unwrap_or("other");
            let op = operation(path, method, op, default_auth);
            match groups.iter_mut().find(|g| g.name == tag) {
                Some(g) => g.operations.push(op),
                None => groups.push(Group {
                    name: tag.to_string(),
                    description: String::new(),
                    operations: vec![op],
                }),
            }
        }
    }
    groups.retain(|g| !g.operations.is_empty());
    groups
}

fn shapes(doc: &Value) -> Vec<Shape> {
    doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            let required: Vec<&str> = s["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            Shape {
                name: name.clone(),
                description: crate::web::markdown::to_html(&text(&s["description"])),
                fields: s["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(f, p)| Field {
                        name: f.clone(),
                        ty: type_of(p),
                        required: required.contains(&f.as_str()),
                        description: text(&p["description"]),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// `GET /api/v1/docs`: the reference, for anyone (it holds no data).
async fn page(MaybeSession(s): MaybeSession) -> Result<Html<String>, WebError> {
    let doc: Value = serde_json::from_str(super::document_json())
        .map_err(|e| WebError::Internal(format!("the OpenAPI document: {e}")))?;
    Ok(Html(
        DocsPage {
            nav: s.as_ref().and_then(Nav::of),
            title: text(&doc["info"]["title"]),
            version: text(&doc["info"]["version"]),
            intro: crate::web::markdown::to_html(&text(&doc["info"]["description"])),
            groups: groups(&doc),
            shapes: shapes(&doc),
        }
        .render()?,
    ))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/docs", get(page))
}
