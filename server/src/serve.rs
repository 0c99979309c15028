//! `serve` and `demo`: open the data directory, pick the keys, and run the HTTP server
//! until SIGINT or SIGTERM, then finish in-flight requests and close the database.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prismdb::{Database, ObjectType, Options, Principal};

use crate::auth::Keys;
use crate::extract::AppState;
use crate::{routes, DemoArgs, ServeArgs};

/// The database file inside a data directory.
pub const DB_FILE: &str = "prismdb.redb";

/// Opens (or makes) the database of a data directory with `options`.
pub fn open(data: &Path, options: Options) -> Result<Database, String> {
    std::fs::create_dir_all(data)
        .map_err(|e| format!("cannot make data directory {}: {e}", data.display()))?;
    let path = data.join(DB_FILE);
    Database::open_with(&path, options).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// The options of a serving database: the import worker on, the trash kept `trash_days`.
fn serving(trash_days: u64) -> Options {
    Options {
        jobs: true,
        trash_retention: Duration::from_secs(trash_days * 24 * 3600),
        ..Options::default()
    }
}

/// How often the server purges the trash of records past the retention.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

fn parse_listen(listen: &str, loopback_only: bool) -> Result<SocketAddr, String> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?;
    if loopback_only && !addr.ip().is_loopback() {
        return Err(format!(
            "--listen {addr}: without --keys the server listens on loopback only"
        ));
    }
    Ok(addr)
}

/// `prismdb serve`: the API with the keys of `--keys`, or on loopback with the data
/// directory's local admin key. Returns when the server stops; errors name what failed.
pub fn serve(args: ServeArgs) -> Result<(), String> {
    let addr = parse_listen(&args.listen, args.keys.is_none())?;
    let keys = match &args.keys {
        Some(path) => Keys::load(path)?,
        None => {
            std::fs::create_dir_all(&args.data).map_err(|e| e.to_string())?;
            let (keys, key, principal) = Keys::local(&args.data)?;
            println!("local admin key: {key}");
            println!("team: {}", principal.team);
            keys
        }
    };
    let db = open(&args.data, serving(args.trash_days))?;
    run(db, keys, addr, |_| {})
}

/// `prismdb demo`: loads demo data into an empty data directory, then serves it on
/// loopback with the local admin key, printing the key and three requests to try.
pub fn demo(args: DemoArgs) -> Result<(), String> {
    let addr = parse_listen(&args.listen, true)?;
    std::fs::create_dir_all(&args.data).map_err(|e| e.to_string())?;
    let (keys, key, admin) = Keys::local(&args.data)?;
    let db = open(&args.data, serving(args.trash_days))?;
    let loaded = db
        .count(&admin, ObjectType::Contact)
        .map_err(|e| e.to_string())?;
    if loaded == 0 {
        eprintln!("loading demo data into {}", args.data.display());
        crate::demo::load(&db, admin.team, args.contacts)?;
    }
    run(db, keys, addr, |bound| print_try(bound, &key, &admin))
}

fn print_try(addr: SocketAddr, key: &str, admin: &Principal) {
    let base = format!("http://{addr}/v2/prism/{}", admin.team);
    let auth = format!("-H 'Authorization: Bearer {key}'");
    println!("API key: {key}");
    println!("Try:");
    println!("  curl -s {auth} '{base}/contact?limit=3'");
    println!("  curl -s {auth} '{base}/deal/count'");
    println!(
        "  curl -s {auth} -H 'Content-Type: application/json' -X POST '{base}/deal/query' \
         -d '{{\"filter\": {{\"stage\": \"won\", \"amount\": {{\"$gte\": 50000}}}}, \
         \"sort\": [{{\"property\": \"amount\", \"direction\": \"desc\"}}], \"limit\": 5}}'"
    );
    println!("OpenAPI document: http://{addr}/openapi.json");
}

/// Runs the server on `addr` until a shutdown signal; `announce` is called with the bound
/// address once the socket listens. The database closes when the last request is done.
fn run(
    db: Database,
    keys: Keys,
    addr: SocketAddr,
    announce: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let state = AppState {
        db: Arc::new(db),
        keys: Arc::new(keys),
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        println!("prismdb listening on http://{bound}");
        announce(bound);
        let _ = std::io::stdout().flush();
        tokio::spawn(purge_trash_hourly(state.clone()));
        let (app, _) = routes::router(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| format!("server failed: {e}"))
    })?;
    drop(runtime);
    tracing::info!("stopped; the database is closed");
    Ok(())
}

/// Purges the trash of records deleted longer ago than the retention: at start, then
/// hourly (SPEC §3). A failure is logged and retried at the next hour.
async fn purge_trash_hourly(state: AppState) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        every.tick().await;
        match state.run(|db| db.purge_trash()).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged records past the trash retention"),
            Err(error) => tracing::warn!(?error, "trash purge failed"),
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
