use clap::Parser;
use event_consumer::startup::App;
use platform::service::{self, ConfigFile};

#[derive(Parser)]
#[command(about = "Idempotent consumer of user events")]
struct Cli {
    #[command(flatten)]
    config: ConfigFile,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    service::serve::<App>(cli.config.load()?).await
}
