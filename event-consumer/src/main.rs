use clap::Subcommand;
use event_consumer::startup::App;
use platform::service::{self, Cli};

#[derive(Subcommand)]
enum Command {
    /// Consume and serve the internal API (the default).
    Serve,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::<Command>::parse_for("event-consumer", "Idempotent consumer of user events");
    service::serve::<App>(cli.config.load()?).await
}
