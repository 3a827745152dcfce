use std::process::ExitCode;

use clap::Parser;
use coursegen::cli::{self, Cli};

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    if let Err(e) = coursegen::telemetry::init(&cli.log, cli.default_log_filter()) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    match system.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
