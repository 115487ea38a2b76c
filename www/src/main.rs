//! `edgewise-www`: serves the Edgewise demo web app (see the library's docs
//! for the routes). `cargo xtask demo` runs it beside the origin and an edge;
//! run by hand:
//!
//! ```sh
//! EDGEWISE_WWW_TOKEN_SECRET=… edgewise-www --edge http://127.0.0.1:8081 --package target/npm/pkg
//! ```
//!
//! The token secret comes from the environment (never from the command line,
//! which other users of the machine can read) and must be the HS256 secret the
//! origin and the edge verify user tokens with. Serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use edgewise_lab::movielens::{self, OnError};
use edgewise_www::{DEFAULT_USERS, Demo, DemoSettings, app, check_listen, existing_dir};

/// The variable that holds the user-token secret.
const SECRET_ENV: &str = "EDGEWISE_WWW_TOKEN_SECRET";

#[derive(Parser, Debug)]
#[command(name = "edgewise-www", version, about = "The Edgewise demo web app's server")]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The edge's base URL, as the page will call it.
    #[arg(long)]
    edge: String,
    /// The built npm package folder (`cargo xtask npm` writes `<target>/npm/pkg`).
    #[arg(long)]
    package: PathBuf,
    /// The page's files.
    #[arg(long = "static", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/static"))]
    static_dir: PathBuf,
    /// The MovieLens-100K files [default: the copy `edgewise-lab import movielens` installed].
    #[arg(long)]
    movielens: Option<PathBuf>,
    /// The users the picker offers (comma-separated MovieLens ids).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_USERS)]
    users: Vec<u64>,
    /// Items per feed.
    #[arg(short, long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    k: u32,
    /// Candidates per bundle.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    candidates: u32,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    check_listen(a.listen)?;
    let secret = std::env::var(SECRET_ENV).with_context(|| {
        format!("{SECRET_ENV} is not set: it must hold the user-token secret the origin and edge verify with")
    })?;
    let static_dir = existing_dir(&a.static_dir, "the page folder (--static)", "")?;
    let package = existing_dir(&a.package, "the npm package folder (--package)", " (build it with `cargo xtask npm`)")?;
    let dir = match a.movielens {
        Some(d) => d,
        None => movielens::installed_dir(|m| eprintln!("{m}")).context("cannot find MovieLens-100K")?,
    };
    let data = movielens::load(&dir, OnError::Skip)
        .with_context(|| format!("reading MovieLens-100K from {}", dir.display()))?;
    let settings = DemoSettings {
        edge: a.edge.clone(),
        users: a.users,
        k: a.k,
        candidates: a.candidates,
        secret: secret.into_bytes(),
    };
    let demo = Arc::new(Demo::new(&data, settings)?);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
        let router = app(demo, &static_dir, &package, listener.local_addr()?.port())?;
        tracing::info!(addr = %listener.local_addr()?, edge = a.edge, "demo page listening");
        let metrics = edgewise_http::metrics::HttpMetrics::new()?;
        edgewise_http::serve::serve(listener, router, Default::default(), metrics, shutdown_signal()).await?;
        tracing::info!("shut down cleanly");
        Ok(())
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, () = term => {} }
}
