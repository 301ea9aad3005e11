use bff::startup::App;
use clap::Subcommand;
use platform::service::{self, Cli};

#[derive(Subcommand)]
enum Command {
    /// Serve the public API (the default).
    Serve,
    /// Print a fresh Ed25519 token key pair as PASERK strings, and its key id.
    Keygen,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::<Command>::parse_for("bff", "The public backend-for-frontend");
    if let Some(Command::Keygen) = cli.command {
        let (secret, public, kid) = bff::tokens::generate_paserk()?;
        println!("TOKEN_SECRET_KEY={secret}");
        println!("TOKEN_PUBLIC_KEYS={public}");
        println!("# kid: {kid}");
        return Ok(());
    }
    service::serve::<App>(cli.config.load()?).await
}
