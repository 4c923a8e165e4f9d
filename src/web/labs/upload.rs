//! Creating (or replacing) a lab in the browser: the YAML in a textarea or
//! as a file, plus the SQL/dump files it names, streamed to a staging folder,
//! validated (errors next to their line), loaded into scratch databases, and
//! only then moved into place.

use super::{AppState, Nav, WebError};
use crate::lab::{LabError, LoadedLab};
use crate::web::session::Master;
use crate::web::session::{self, Session};
use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::path::{Path, PathBuf};
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
    }
}

async fn form(Master(s): Master) -> Result<Html<String>, WebError> {
    Ok(Html(page(&s, EXAMPLE.to_string(), vec![], false).render()?))
}

/// Removes the staging folder unless it was moved into place.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file name from the browser, reduced to a plain name in the folder.
fn file_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next()?.trim();
    let ok = !base.is_empty()
        && !base.starts_with('.')
        && base.len() <= 100
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    (ok && base != "lab.yaml").then(|| base.to_string())
}

struct Upload {
    yaml: String,
    replace: bool,
    files: Vec<String>,
}

/// Reads the form; files are written chunk by chunk, never held whole.
async fn receive(s: &Session, mut form: Multipart, dir: &Path) -> Result<Upload, WebError> {
    let bad = |e: axum::extract::multipart::MultipartError| WebError::BadRequest(e.body_text());
    let mut up = Upload {
        yaml: String::new(),
        replace: false,
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

/// Loads the staged lab; every problem as (line, message), line 0 when the
/// message is not about a line of the YAML.
async fn validate(
    state: &AppState,
    dir: &Path,
    up: &Upload,
) -> Result<LoadedLab, Vec<(usize, String)>> {
    let file = dir.join("lab.yaml");
    std::fs::write(&file, &up.yaml).map_err(|e| vec![(0, format!("cannot store the lab: {e}"))])?;
    let lab = match LoadedLab::load(&file) {
        Ok(lab) => lab,
        Err(LabError::Invalid(errors)) => {
            return Err(errors
                .into_iter()
                .map(|e| {
                    // Paths on the server mean nothing to the lab master.
                    let message = match e.message.split_once(" (looked in ") {
                        Some((head, _)) => format!("{head}: add it under \"Files\""),
                        None => e.message,
                    };
                    let text = if e.field.is_empty() {
                        message
                    } else {
                        format!("{}: {message}", e.field)
                    };
                    (e.line, text)
                })
                .collect());
        }
        Err(LabError::Read { path, .. }) => {
            let name = Path::new(&path)
                .file_name()
                .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
            return Err(vec![(
                0,
                format!("the lab names {name}, which was not uploaded (add it under \"Files\")"),
            )]);
        }
    };
    // Sources must be files of this upload, not paths on the server.
    for source in std::iter::once(&lab.lab.reference).chain(lab.lab.starter.as_ref()) {
        if source.path().parent() != Some(dir) {
            return Err(vec![(
                0,
                format!(
                    "{}: name a file uploaded with the lab, without folders",
                    source.path().display()
                ),
            )]);
        }
    }
    let id = &lab.lab.id;
    let exists = state.store.lab(id).await.ok().flatten().is_some();
    if exists && !up.replace {
        return Err(vec![(0, format!("a lab with id {id} exists; tick \"Replace\" to update its files, or choose another id"))]);
    }
    let server = &state.settings.postgres[0];
    if let Err(e) = crate::app::check_lab_loads(server, &lab).await {
        return Err(vec![(
            0,
            format!("the reference or starter does not load: {e:#}"),
        )]);
    }
    Ok(lab)
}

async fn create(
    State(state): State<AppState>,
    Master(s): Master,
    form: Multipart,
) -> Result<Response, WebError> {
    let labs = state.settings.data_dir.join("labs");
    let staging = Staging(labs.join(format!(".upload-{}", session::random_token())));
    std::fs::create_dir_all(&staging.0)
        .map_err(|e| WebError::Internal(format!("staging folder: {e}")))?;
    let up = receive(&s, form, &staging.0).await?;
    let lab = match validate(&state, &staging.0, &up).await {
        Ok(lab) => lab,
        Err(errors) => {
            let mut response =
                Html(page(&s, up.yaml, errors, up.replace).render()?).into_response();
            *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(response);
        }
    };
    // The control database keeps the lab with its files; the staging
    // folder goes when this request ends.
    let sources = lab
        .lab
        .read_sources()
        .map_err(|e| WebError::Internal(e.to_string()))?;
    state.store.upsert_lab(&lab, &sources).await?;
    tracing::info!(lab = %lab.lab.id, files = ?up.files, user = %s.user, "lab stored");
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
