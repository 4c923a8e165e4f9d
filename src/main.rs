use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Every file pglab (or a server it starts) writes is its own.
    pglab::private_files::restrict_umask();
    let cli = pglab::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGLAB_LOG")
                .unwrap_or_else(|_| "warn,pglab=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match pglab::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Print each cause once: many of pglab's errors already name theirs.
            let mut shown = e.to_string();
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !shown.contains(&text) {
                    shown = format!("{shown}: {text}");
                }
            }
            eprintln!("error: {shown}");
            std::process::ExitCode::FAILURE
        }
    }
}
