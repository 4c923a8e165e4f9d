//! Creating (or replacing) a lab in the browser: the YAML in a textarea or
//! as a file, plus the SQL/dump files it names, streamed to a staging folder,
//! validated (errors next to their line), loaded into scratch databases, and
//! only then moved into place.

use super::{AppState, Nav, WebError};
use crate::app::lab_upload::{file_name, store_lab, validate, Staging};
use crate::web::session::Master;
use crate::web::session::Session;
use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Largest upload of lab files in one form.
const MAX_UPLOAD: usize = 512 * 1024 * 1024;

const EXAMPLE: &str = include_str!("../../demo/lab.yaml");

/// A line of the YAML with the errors that point at it.
pub struct YamlLine {
    pub number: usize,
    pub text: String,
    pub errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "lab_new.html")]
struct NewLabPage {
    nav: Option<Nav>,
    yaml: String,
    lines: Vec<YamlLine>,
    /// Errors not tied to a line of the YAML.
    errors: Vec<String>,
    replace: bool,
    /// The mutation report, when asked for ("Check only").
    report: Option<crate::mutants::report::Report>,
}

fn page(s: &Session, yaml: String, errors: Vec<(usize, String)>, replace: bool) -> NewLabPage {
    let mut lines: Vec<YamlLine> = yaml
        .lines()
        .enumerate()
        .map(|(i, t)| YamlLine {
            number: i + 1,
            text: t.to_string(),
            errors: vec![],
        })
        .collect();
    let mut other = vec![];
    for (line, message) in errors {
        match lines.get_mut(line.wrapping_sub(1)) {
            Some(l) if line > 0 => l.errors.push(message),
            _ => other.push(message),
        }
    }
    if !lines.iter().any(|l| !l.errors.is_empty()) {
        lines.clear(); // nothing to point at: no annotated listing
    }
    NewLabPage {
        nav: Nav::of(s),
        yaml,
        lines,
        errors: other,
        replace,
        report: None,
    }
}

async fn form(Master(s): Master) -> Result<Html<String>, WebError> {
    Ok(Html(page(&s, EXAMPLE.to_string(), vec![], false).render()?))
}

struct Upload {
    yaml: String,
    replace: bool,
    /// "Check only": validate and show the mutation report, save nothing.
    report: bool,
    files: Vec<String>,
}

/// Reads the form; files are written chunk by chunk, never held whole.
async fn receive(s: &Session, mut form: Multipart, dir: &Path) -> Result<Upload, WebError> {
    let bad = |e: axum::extract::multipart::MultipartError| WebError::BadRequest(e.body_text());
    let mut up = Upload {
        yaml: String::new(),
        replace: false,
        report: false,
        files: vec![],
    };
    let mut csrf_ok = false;
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "csrf" {
            s.check_csrf(&field.text().await.map_err(bad)?)?;
            csrf_ok = true;
            continue;
        }
        // The token comes first in the form: nothing is stored without it.
        if !csrf_ok {
            return Err(WebError::Csrf);
        }
        match name.as_str() {
            "yaml" => {
                let text = field.text().await.map_err(bad)?;
                if up.yaml.trim().is_empty() {
                    up.yaml = text;
                }
            }
            "yaml_file" => {
                let text = field.text().await.map_err(bad)?;
                if !text.trim().is_empty() {
                    up.yaml = text; // an uploaded file wins over the textarea
                }
            }
            "replace" => up.replace = true,
            "action" => up.report = field.text().await.map_err(bad)? == "report",
            // Small SQL files may be typed instead of uploaded.
            "reference_sql" | "starter_sql" => {
                let text = field.text().await.map_err(bad)?;
                if !text.trim().is_empty() {
                    let fname = name.replace("_sql", ".sql");
                    std::fs::write(dir.join(&fname), text)
                        .map_err(|e| WebError::Internal(format!("writing {fname}: {e}")))?;
                    up.files.push(fname);
                }
            }
            "files" => {
                let Some(fname) = field.file_name().and_then(file_name) else {
                    if field.file_name().is_some_and(|f| !f.is_empty()) {
                        return Err(WebError::BadRequest(format!(
                            "file name {:?}: use letters, digits, '.', '-' and '_' (and not lab.yaml)",
                            field.file_name().unwrap_or("")
                        )));
                    }
                    continue; // the empty file input
                };
                let io = |e: std::io::Error| WebError::Internal(format!("writing upload: {e}"));
                let mut out = tokio::fs::File::create(dir.join(&fname))
                    .await
                    .map_err(io)?;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    out.write_all(&chunk).await.map_err(io)?;
                }
                out.flush().await.map_err(io)?;
                up.files.push(fname);
            }
            _ => {}
        }
    }
    if !csrf_ok {
        return Err(WebError::Csrf);
    }
    Ok(up)
}

async fn create(
    State(state): State<AppState>,
    Master(s): Master,
    form: Multipart,
) -> Result<Response, WebError> {
    let staging = Staging::new(&state.settings)
        .map_err(|e| WebError::Internal(format!("staging folder: {e}")))?;
    let up = receive(&s, form, staging.path()).await?;
    let checked = validate(
        &state.settings,
        &state.store,
        staging.path(),
        &up.yaml,
        up.replace,
    )
    .await?;
    let lab = match checked {
        Ok(lab) => lab,
        Err(problems) => {
            let errors = problems.iter().map(|p| (p.line, p.text())).collect();
            let mut response =
                Html(page(&s, up.yaml, errors, up.replace).render()?).into_response();
            *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(response);
        }
    };
    if up.report {
        let limits = crate::scoring::checks::Limits::of(&state.settings.scoring);
        let report = crate::app::mutation_report(&state.settings.postgres[0], &lab, &limits)
            .await
            .map_err(|e| WebError::Internal(format!("mutation report: {e:#}")))?;
        let mut checked = page(&s, up.yaml, vec![], up.replace);
        checked.report = Some(report);
        return Ok(Html(checked.render()?).into_response());
    }
    // The control database keeps the lab with its files; the staging
    // folder goes when this request ends.
    store_lab(&state.store, &lab, &s.user)
        .await
        .map_err(|e| WebError::Internal(format!("{e:#}")))?;
    tracing::info!(files = ?up.files, "lab files");
    Ok(Redirect::to(&format!("/labs/{}", lab.lab.id)).into_response())
}

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/labs/new",
        get(form)
            .post(create)
            .layer(DefaultBodyLimit::max(MAX_UPLOAD)),
    )
}
