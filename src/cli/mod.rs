//! The command line: one `enum Command`, shared options flattened.

mod commands;
mod evidence;
mod export;
mod generate;
mod mail;
mod moves;
mod mutants;
mod score;
mod tokens;

mod up;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "pglab",
    version,
    about = "Hands-on PostgreSQL labs: LDAP accounts, private databases, live scoring"
)]
pub struct Cli {
    /// pglab's config file (`pglab up` writes one into its data directory).
    #[arg(
        long,
        global = true,
        env = "PGLAB_CONFIG",
        default_value = ".pglab/pglab.yaml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start private Postgres, slapd (and Prometheus) on loopback, then the web app.
    Up(up::UpArgs),
    /// Run the web app against the services in the config.
    Serve,
    /// Print the API's OpenAPI 3.1 document (as served at /api/v1/openapi.json).
    Openapi,
    /// Lab files.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Show what `apply` would change; changes nothing.
    Plan(ApplyArgs),
    /// Provision the lab and its participants in LDAP and Postgres.
    Apply(ApplyArgs),
    /// Write the lab's SQL-exporter config, Prometheus config and rules, Grafana board.
    Generate(generate::GenerateArgs),
    /// Write `haproxy.cfg` for pglab replicas behind HAProxy.
    Haproxy {
        /// Where HAProxy listens (the address people use).
        #[arg(long, default_value = "127.0.0.1:8080", value_parser = crate::generate::haproxy::address)]
        listen: String,
        /// A replica's address, `host:port` (`listen` of its config); once
        /// per replica.
        #[arg(long = "replica", required = true, value_parser = crate::generate::haproxy::address)]
        replicas: Vec<String>,
        /// Write here (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the initial passwords of a lab's participants.
    Credentials {
        /// Lab id.
        lab: String,
        /// Forget the stored initial passwords once they are handed out.
        #[arg(long)]
        forget: bool,
    },
    /// Score a lab's participants now and print the table.
    Score {
        /// Lab id.
        lab: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// A lab's analytics: pass rate and time to the first pass per task,
    /// tasks that broke again, participants without progress, hand-ins.
    Stats {
        /// Lab id.
        lab: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Move one participant's deadline (their final state is taken then;
    /// one taken already is set aside and the database opened again).
    Extend {
        /// Lab id.
        lab: String,
        /// The participant's username.
        user: String,
        /// The new deadline: an RFC 3339 time, or `+DURATION` after the
        /// lab's deadline (`+90m`, `+24h`, `+2d`).
        #[arg(long)]
        until: String,
    },
    /// A participant's snapshots (newest first) and final state.
    Snapshots {
        /// Lab id.
        lab: String,
        /// The participant's username.
        user: String,
    },
    /// Every database's final state at its deadline: score, snapshot, and
    /// whether it was taken late (and why).
    Finals {
        /// Lab id.
        lab: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Export a lab's data as a zip archive (run as a job; lab masters
    /// also start exports on the lab's page).
    Export {
        /// Lab id.
        lab: String,
        /// Optional parts, comma-separated: dumps, snapshots, logs, bom.
        #[arg(long, default_value = "")]
        with: String,
        /// Copy the archive here (default: print where it is kept).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Move a participant's database to another Postgres server (dump,
    /// restore there, switch, drop the source); their psql command changes.
    Move {
        /// Lab id.
        lab: String,
        /// The participant's username (for a group database: any member).
        user: String,
        /// Name of the target server in the config.
        #[arg(long)]
        to: String,
    },
    /// Move every lab database off one Postgres server.
    Drain {
        /// Name of the server in the config.
        server: String,
    },
    /// Mail participants (through the SMTP server of the config).
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
    /// Personal API tokens (`Authorization: Bearer pglab_...`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the pseudonym of each participant of a lab (for `pseudonymize: true`).
    Pseudonyms {
        /// Lab id.
        lab: String,
    },
    /// Lab masters and staff of the web app (LDAP people in the role groups).
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// The config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Create or upgrade the control database.
    Migrate,
    /// Exit 0 when the web app at `listen` answers healthy.
    Healthcheck {
        /// Base URL (default: http://<listen> from the config).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Validate a lab file and load its reference and starter into scratch databases.
    Check {
        file: PathBuf,
        /// Only validate the file; do not load anything.
        #[arg(long, conflicts_with = "mutants")]
        no_load: bool,
        /// Also report which likely mistakes in the view and query checks
        /// the lab's data (and its datasets) cannot tell from the answer.
        #[arg(long)]
        mutants: bool,
        /// The mutation report as JSON on standard output.
        #[arg(long, requires = "mutants")]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Mail each participant their username, initial password and psql
    /// command (once per password; a reset makes a new one mailable).
    Credentials {
        /// Lab id.
        lab: String,
        /// Only these participants (repeat; default: everyone not mailed yet).
        #[arg(long = "to", value_name = "USER")]
        to: Vec<String>,
        /// Print who would get what (and the first message); send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The lab's delivery log: to whom, what, status, attempts, the server's answer.
    Log {
        /// Lab id.
        lab: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token (printed once; pglab keeps only its hash).
    Create {
        /// What it is for (`gradebook sync`).
        name: String,
        /// The lab master or staff member it acts as (default: the bootstrap admin, web.admin_user).
        #[arg(long)]
        owner: Option<String>,
        /// read, write or admin.
        #[arg(long, default_value = "read")]
        scope: String,
        /// It stops working after this long (`30d`, `12h`).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[arg(long)]
        owner: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Create an LDAP person (or take an existing one) and put them in the
    /// lab masters' group (or, with --read-only, the staff group); prints a
    /// new password when the person is new.
    Add {
        username: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// Staff (TA): read-only pages instead of lab master.
        #[arg(long)]
        read_only: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print an example config.
    Example,
    /// Validate the config and reach every service in it.
    Check,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The lab file.
    pub lab: PathBuf,
    /// CSV with header username,name,email[,group].
    #[arg(long)]
    pub participants: PathBuf,
    /// Remove participants no longer listed (their databases are dumped first).
    #[arg(long)]
    pub prune: bool,
}

/// Runs the command; the error is printed by `main`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Serve => commands::serve(&cli.config).await,
        Command::Lab {
            command:
                LabCommand::Check {
                    file,
                    no_load,
                    mutants,
                    json,
                },
        } => match (no_load, mutants) {
            (_, true) => mutants::lab_check_mutants(&cli.config, &file, json).await,
            _ => commands::lab_check(&cli.config, &file, no_load).await,
        },
        Command::Plan(args) => commands::plan(&cli.config, &args).await,
        Command::Apply(args) => commands::apply(&cli.config, &args).await,
        Command::Credentials { lab, forget } => {
            commands::credentials(&cli.config, &lab, forget).await
        }
        Command::Generate(args) => generate::run(&cli.config, &args).await,
        Command::Haproxy {
            listen,
            replicas,
            out,
        } => generate::haproxy(&listen, &replicas, out.as_deref()),
        Command::Score { lab, json } => score::score(&cli.config, &lab, json).await,
        Command::Pseudonyms { lab } => score::pseudonyms(&cli.config, &lab).await,
        Command::Stats { lab, json } => score::stats(&cli.config, &lab, json).await,
        Command::Extend { lab, user, until } => {
            evidence::extend(&cli.config, &lab, &user, &until).await
        }
        Command::Snapshots { lab, user } => evidence::snapshots(&cli.config, &lab, &user).await,
        Command::Finals { lab, json } => evidence::finals(&cli.config, &lab, json).await,
        Command::Move { lab, user, to } => moves::move_one(&cli.config, &lab, &user, &to).await,
        Command::Drain { server } => moves::drain(&cli.config, &server).await,
        Command::Mail { command } => match command {
            MailCommand::Credentials { lab, to, dry_run } => {
                mail::credentials(&cli.config, &lab, &to, dry_run).await
            }
            MailCommand::Log { lab } => mail::log(&cli.config, &lab).await,
        },
        Command::Token { command } => tokens::run(&cli.config, command).await,
        Command::Openapi => {
            println!("{}", crate::web::openapi_json());
            Ok(())
        }
        Command::Export { lab, with, out } => {
            export::export(&cli.config, &lab, &with, out.as_deref()).await
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", commands::example_config());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => commands::config_check(&cli.config).await,
        Command::Staff {
            command:
                StaffCommand::Add {
                    username,
                    name,
                    email,
                    read_only,
                },
        } => commands::staff_add(&cli.config, &username, &name, &email, read_only).await,
        Command::Migrate => commands::migrate(&cli.config).await,
        Command::Healthcheck { url } => commands::healthcheck(&cli.config, url).await,
    }
}
