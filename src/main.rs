use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = pglab::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGLAB_LOG").unwrap_or_else(|_| "warn,pglab=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match pglab::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
