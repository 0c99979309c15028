//! `prismdb`: the Prism objects API over HTTP on an embedded prismdb file (`serve`,
//! `demo`), and the tools around it (`load`, `query`, `check`).

mod api;
mod auth;
mod commands;
mod demo;
mod error;
mod extract;
mod routes;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

/// The Prism objects API on an embedded prismdb file.
#[derive(Parser)]
#[command(name = "prismdb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Prism objects API over HTTP.
    Serve(ServeArgs),
    /// Load demo data into the data directory if it has none, then serve it with a local
    /// admin key (the README's main job).
    Demo(DemoArgs),
    /// Fill a database with realistic demo data for a team.
    Load(LoadArgs),
    /// Print one page of a query as a table or JSON.
    Query(QueryArgs),
    /// Check that every index agrees with the records (verify_integrity).
    Check(CheckArgs),
}

/// Arguments of `serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The data directory (made if missing); the database is `DIR/prismdb.redb`.
    #[arg(long)]
    pub data: PathBuf,
    /// The address to listen on; without `--keys` it must be a loopback address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// A JSON file `{"<api key>": {team, user, groups, role}}`. Without it the server
    /// listens on loopback only with a local admin key kept in the data directory.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Days a soft-deleted record stays in the trash before the hourly purge removes it.
    #[arg(long, default_value_t = 30)]
    pub trash_days: u64,
}

/// Arguments of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// The data directory (made if missing).
    #[arg(long, default_value = "prism-data")]
    pub data: PathBuf,
    /// The loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// How many contacts to load into an empty directory.
    #[arg(long, default_value_t = 5_000)]
    pub contacts: usize,
    /// Days a soft-deleted record stays in the trash before the hourly purge removes it.
    #[arg(long, default_value_t = 30)]
    pub trash_days: u64,
}

/// Arguments of `load`.
#[derive(Args)]
pub struct LoadArgs {
    /// The data directory (made if missing).
    #[arg(long)]
    pub data: PathBuf,
    /// The team to load into.
    #[arg(long)]
    pub team: Uuid,
    /// How many contacts; organizations, deals, actions, documents and events scale
    /// with it.
    #[arg(long, default_value_t = 10_000)]
    pub contacts: usize,
}

/// Arguments of `query`.
#[derive(Args)]
pub struct QueryArgs {
    /// The data directory.
    #[arg(long)]
    pub data: PathBuf,
    /// The team to read (as its admin).
    #[arg(long)]
    pub team: Uuid,
    /// The object type.
    #[arg(long = "type", default_value = "contact")]
    pub ty: String,
    /// The filter, as SPEC §4's JSON.
    #[arg(long)]
    pub filter: Option<String>,
    /// Sort keys: `slug` or `slug:desc`, comma-separated.
    #[arg(long)]
    pub sort: Option<String>,
    /// Page size.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// The properties to show, comma-separated (default all).
    #[arg(long)]
    pub properties: Option<String>,
    /// Print the page as the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `check`.
#[derive(Args)]
pub struct CheckArgs {
    /// The data directory.
    #[arg(long)]
    pub data: PathBuf,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let outcome = match Cli::parse().command {
        Command::Serve(args) => serve::serve(args),
        Command::Demo(args) => serve::demo(args),
        Command::Load(args) => commands::load(args),
        Command::Query(args) => commands::query(args),
        Command::Check(args) => commands::check(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("prismdb: {message}");
            ExitCode::FAILURE
        }
    }
}
