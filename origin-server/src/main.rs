//! `edgewise-origin`: the Edgewise origin server (`serve`) and its token tool.
//! Offline work on the data directory (import, train, eval) is `edgewise-lab`.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use edgewise_origin::Config;
use edgewise_origin::cli::GlobalArgs;

#[derive(Parser, Debug)]
#[command(name = "edgewise-origin", version, about = "The Edgewise origin server")]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on (overrides `server.listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Number of index shards (overrides `index.shards`; 0 = one per core).
        #[arg(long)]
        shards: Option<usize>,
    },
    /// Mint a user token with the configured HS256 secret (the first of
    /// `auth.user_tokens.hmac_secrets`), as an application's backend would;
    /// prints it on stdout. For operators and local testing.
    Token {
        /// The user the token is for (its `sub`).
        #[arg(long)]
        user: u64,
        /// Lifetime in seconds (at most `auth.user_tokens.max_lifetime_s`).
        #[arg(long, default_value_t = 900)]
        ttl: u64,
    },
}

/// The `serve` flags, as configuration overrides.
fn overrides(cli: &Cli) -> Vec<(&'static str, figment::value::Value)> {
    let mut o = Vec::new();
    if let Cmd::Serve { listen, shards } = &cli.cmd {
        if let Some(l) = listen {
            o.push(("server.listen", l.to_string().into()));
        }
        if let Some(s) = shards {
            o.push(("index.shards", (*s as u64).into()));
        }
    }
    o
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    cli.global.init_logging();
    let cfg = cli.global.load(overrides(&cli))?;
    match &cli.cmd {
        Cmd::Serve { .. } => serve(cfg),
        Cmd::Token { user, ttl } => mint_token(&cfg, *user, *ttl),
    }
}

fn mint_token(cfg: &Config, user: u64, ttl: u64) -> Result<()> {
    let t = &cfg.auth.user_tokens;
    let Some(secret) = t.hmac_secrets.first() else {
        bail!(
            "no HS256 secret is configured: set auth.user_tokens.hmac_secrets (e.g. EDGEWISE__AUTH__USER_TOKENS__HMAC_SECRETS='[\"<32+ random bytes>\"]')"
        );
    };
    if ttl == 0 || ttl > t.max_lifetime_s {
        bail!("--ttl {ttl} must be in 1..={} (auth.user_tokens.max_lifetime_s)", t.max_lifetime_s);
    }
    let spec = edgewise_http::auth::TokenSpec {
        issuer: t.issuer.clone(),
        audience: t.audience.clone(),
        ..edgewise_http::auth::TokenSpec::new(user, ttl)
    };
    println!("{}", edgewise_http::auth::mint_hs256(secret.as_bytes(), &spec)?);
    Ok(())
}

fn serve(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listen = cfg.server.listen;
        tracing::info!(data_dir = %cfg.data_dir.display(), %listen, shards = cfg.index.shard_count(), "starting");
        let state = edgewise_origin::open(cfg)?;
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(addr = %listener.local_addr()?, "listening; /readyz answers 503 until the index is loaded");
        let loader = state.clone();
        let load = tokio::task::spawn_blocking(move || {
            let pb = edgewise_origin::progress_bar(0, "loading items");
            let r = edgewise_origin::recover(&loader, |n, total| {
                pb.set_length(total);
                pb.set_position(n);
            });
            pb.finish_and_clear();
            r
        });
        let server = tokio::spawn(edgewise_origin::serve(state.clone(), listener, shutdown_signal()));
        load.await.context("start-up recovery panicked")??;
        server.await.context("server task failed")??;
        let saver = state.clone();
        let start = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || edgewise_origin::save_snapshots(&saver)).await? {
            Ok(bytes) if bytes > 0 => tracing::info!(
                bytes,
                seconds = start.elapsed().as_secs_f64(),
                "index snapshots saved; the next start loads them"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "index snapshots not saved; the next start rebuilds the index"),
        }
        tracing::info!("shut down cleanly");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
