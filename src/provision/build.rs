//! Building a lab's reference and template databases on one server from the
//! lab's `reference` and `starter`: SQL run by pglab itself (`lab_sql`),
//! archives by the real pg_restore.

use super::datasets;
use super::postgres::{
    create_closed_database, drop_database, revoke_connect_sql, sql_err, PgError, STARTER_ROLE,
};
use super::tools::{self, ToolError};
use crate::ident::{quote_ident, PgName};
use crate::lab::{Lab, Source, SourceFile};
use crate::pgconn;
use crate::settings::PgServerSettings;
use tokio_postgres::Client;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Sources(#[from] crate::lab::LabError),
    // Not a `source`: the cause is in the message already, and chains
    // (`{:#}`) would show it twice.
    #[error("{what} of lab {lab}: {cause}")]
    Load {
        what: String,
        lab: String,
        cause: ToolError,
    },
}

/// Loads `source` (the lab's reference or starter, stored among `files`)
/// into an existing empty database.
async fn load(
    server: &PgServerSettings,
    db: &str,
    (lab, source): (&Lab, &Source),
    files: &[SourceFile],
    role: Option<&str>,
) -> Result<(), ToolError> {
    match source {
        Source::Sql(file) => {
            let top = lab
                .stored_name(source)
                .unwrap_or_else(|| file.display().to_string());
            super::lab_sql::run(server, db, files, &top, role).await
        }
        Source::Dump(file) => tools::pg_restore(server, db, file, role).await,
    }
}

async fn create_empty(server: &PgServerSettings, admin: &Client, db: &str) -> Result<(), PgError> {
    drop_database(server, admin, db).await?;
    let name = PgName::from_catalog(db.to_string());
    let create = format!("CREATE DATABASE {} TEMPLATE template0", name.quoted());
    create_closed_database(server, admin, &create, &name, &revoke_connect_sql(&name)).await
}

/// Builds both databases under scratch names; `keep` decides whether they
/// then replace the lab's (apply) or are dropped (lab check). On failure the
/// lab's existing databases are untouched.
#[tracing::instrument(skip_all, fields(server = %server.name, lab = %lab.id))]
pub async fn build_lab(
    server: &PgServerSettings,
    admin: &Client,
    lab: &Lab,
    keep: bool,
) -> Result<(), BuildError> {
    if !keep {
        return check_build(server, admin, lab)
            .await?
            .drop_all(server, admin)
            .await;
    }
    let scratch_ref = format!("pglab.new.ref.{}", lab.id);
    let scratch_tpl = format!("pglab.new.tpl.{}", lab.id);
    let mut made = CheckDatabases {
        reference: scratch_ref.clone(),
        datasets: vec![],
    };
    let mut result = build_scratch(server, admin, lab, &scratch_ref, &scratch_tpl).await;
    if result.is_ok() {
        result = load_datasets(server, admin, lab, "new", &mut made).await;
    }
    if result.is_err() {
        drop_database(server, admin, &scratch_tpl).await?;
        made.drop_all(server, admin).await?;
        return result;
    }
    let datasets = made.datasets.iter().enumerate().map(|(i, db)| {
        (
            db.clone(),
            PgName::from_catalog(datasets::dataset_db(&lab.id, i)),
        )
    });
    let renames = [
        (scratch_ref, PgName::reference_db(&lab.id)),
        (scratch_tpl, PgName::template_db(&lab.id)),
    ];
    for (scratch, final_name) in renames.into_iter().chain(datasets) {
        drop_database(server, admin, final_name.as_str()).await?;
        rename(server, admin, &scratch, &final_name).await?;
    }
    // Datasets the lab no longer lists.
    for i in lab.datasets.len()..crate::lab::MAX_DATASETS {
        drop_database(server, admin, &datasets::dataset_db(&lab.id, i)).await?;
    }
    // Nobody may hold a connection to a template while it is cloned.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            PgName::template_db(&lab.id).quoted()
        ))
        .await
        .map_err(sql_err(&server.name, "close template"))?;
    Ok(())
}

async fn build_scratch(
    server: &PgServerSettings,
    admin: &Client,
    lab: &Lab,
    reference: &str,
    template: &str,
) -> Result<(), BuildError> {
    let failed = |what: &str| {
        let (what, lab) = (what.to_string(), lab.id.to_string());
        move |cause| BuildError::Load { what, lab, cause }
    };
    // Read once: what runs is what was read (and checked for includes).
    let files = lab.read_sources()?;
    create_empty(server, admin, reference).await?;
    load(server, reference, (lab, &lab.reference), &files, None)
        .await
        .map_err(failed("reference"))?;
    create_empty(server, admin, template).await?;
    if let Some(starter) = &lab.starter {
        let inside = pgconn::connect(server, template)
            .await
            .map_err(PgError::from)?;
        inside
            .batch_execute(&format!(
                "GRANT CREATE ON DATABASE {} TO {STARTER_ROLE}; GRANT CREATE ON SCHEMA public TO {STARTER_ROLE};",
                quote_ident(template)
            ))
            .await
            .map_err(sql_err(&server.name, "prepare template"))?;
        drop(inside);
        load(server, template, (lab, starter), &files, Some(STARTER_ROLE))
            .await
            .map_err(failed("starter"))?;
    }
    super::in_database::prepare_template(server, template, lab).await?;
    Ok(())
}

/// Renames database `from`; a session of pglab's own that is still
/// closing there (a loader's) is waited for, up to two seconds.
async fn rename(
    server: &PgServerSettings,
    admin: &Client,
    from: &str,
    to: &PgName,
) -> Result<(), PgError> {
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        to.quoted()
    );
    let mut attempt = 0;
    loop {
        match admin.batch_execute(&sql).await {
            Err(e)
                if attempt < 20
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other.map_err(sql_err(&server.name, format!("rename {from}"))),
        }
    }
}

/// The scratch databases of a lab check (`pglab lab check`, an upload):
/// the lab's reference and each of its datasets, loaded; dropped with
/// [`CheckDatabases::drop_all`]. Other names than an apply's, so both can
/// run at once.
pub struct CheckDatabases {
    pub reference: String,
    pub datasets: Vec<String>,
}

impl CheckDatabases {
    pub async fn drop_all(
        self,
        server: &PgServerSettings,
        admin: &Client,
    ) -> Result<(), BuildError> {
        for db in std::iter::once(&self.reference).chain(&self.datasets) {
            drop_database(server, admin, db).await?;
        }
        Ok(())
    }
}

/// Loads the reference and starter as an apply would (the starter's
/// scratch template is dropped at once), and each dataset; on failure
/// nothing is left behind.
pub async fn check_build(
    server: &PgServerSettings,
    admin: &Client,
    lab: &Lab,
) -> Result<CheckDatabases, BuildError> {
    let mut made = CheckDatabases {
        reference: format!("pglab.check.ref.{}", lab.id),
        datasets: vec![],
    };
    let template = format!("pglab.check.tpl.{}", lab.id);
    let mut result = build_scratch(server, admin, lab, &made.reference, &template).await;
    drop_database(server, admin, &template).await?;
    if result.is_ok() {
        result = load_datasets(server, admin, lab, "check", &mut made).await;
    }
    match result {
        Ok(()) => Ok(made),
        Err(e) => {
            made.drop_all(server, admin).await?;
            Err(e)
        }
    }
}

/// Loads each dataset of `lab` into `pglab.<stage>.ds<n>.<lab>` as the
/// dataset role (so a dataset loads under the same rules as a starter),
/// then closes it to all but the hidden role; each database made is noted
/// in `made`, to be dropped on failure.
async fn load_datasets(
    server: &PgServerSettings,
    admin: &Client,
    lab: &Lab,
    stage: &str,
    made: &mut CheckDatabases,
) -> Result<(), BuildError> {
    if lab.datasets.is_empty() {
        return Ok(());
    }
    datasets::ensure_roles(server, admin).await?;
    let files = lab.read_sources()?;
    for (i, dataset) in lab.datasets.iter().enumerate() {
        let db = format!("pglab.{stage}.ds{}.{}", i + 1, lab.id);
        made.datasets.push(db.clone());
        create_empty(server, admin, &db).await?;
        let inside = pgconn::connect(server, &db).await.map_err(PgError::from)?;
        inside
            .batch_execute(&datasets::before_load_sql(&db))
            .await
            .map_err(sql_err(&server.name, "prepare dataset"))?;
        load(
            server,
            &db,
            (lab, dataset),
            &files,
            Some(datasets::DATASET_ROLE),
        )
        .await
        .map_err(|cause| BuildError::Load {
            what: format!("dataset {} ({})", i + 1, dataset_name(lab, i)),
            lab: lab.id.to_string(),
            cause,
        })?;
        inside
            .batch_execute(&datasets::after_load_sql(&db))
            .await
            .map_err(sql_err(&server.name, "close dataset"))?;
    }
    Ok(())
}

/// How a dataset is named to the lab master: its file name.
pub fn dataset_name(lab: &Lab, i: usize) -> String {
    lab.stored_name(&lab.datasets[i])
        .unwrap_or_else(|| lab.datasets[i].path().display().to_string())
}
