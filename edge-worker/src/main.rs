//! `edgewise-edge`: the Edgewise edge worker.
//!
//! `edgewise-edge serve` runs the edge: it reads the layered configuration,
//! loads (or fetches and verifies) the guest module, proves it with a canary
//! ranking, and serves until SIGINT or SIGTERM ([`edgewise_edge::server::serve`]).
//!
//! `edgewise-edge rank` ranks a candidate bundle through the core guest module
//! in wasmtime and natively, checks that both agree bit for bit, and prints the
//! ranking with the explanation of every stage. Built with the `synth` feature,
//! it generates a clustered synthetic catalogue, a model and a user context
//! when no `--bundle`/`--model` is given.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use edgewise_core::abi::{self, ModelMatch};
use edgewise_core::bundle::{Bundle, SOURCE_NAMES};
use edgewise_core::model::{self, Model};
use edgewise_core::rank::{Outcome, RankContext, RankOutput, Ranker};
use edgewise_edge::cache::Cache;
use edgewise_edge::compiled::CompiledCache;
use edgewise_edge::config::EdgeConfig;
use edgewise_edge::feed::FeedConfig;
use edgewise_edge::guest::{self, GuestModule, Limits};
use edgewise_edge::server::{EdgeState, ServerSettings};
use edgewise_edge::tenants::{GuestOptions, Tenants};

#[derive(Parser, Debug)]
#[command(name = "edgewise-edge", version, about = "The Edgewise edge worker")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Rank a bundle through the guest module and natively, and explain the result.
    Rank(RankArgs),
    /// Serve the regional cache in front of an origin.
    Serve(ServeArgs),
}

/// Flags of `serve`. Each overrides its configuration key; unset flags leave
/// the file, environment and defaults alone (`edgewise_edge::config`).
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Configuration file (TOML); `EDGEWISE_EDGE__SECTION__KEY` variables and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The origin's base URL, e.g. http://127.0.0.1:8080 (`origin.url`).
    #[arg(long)]
    origin: Option<String>,
    /// Address to listen on (`server.listen`) [default: 127.0.0.1:8081].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Most bytes of responses the cache holds (`cache.bytes`) [default: 256 MiB].
    #[arg(long)]
    cache_bytes: Option<u64>,
    /// Keep cached responses on disk in this folder too, so a restart starts warm (`cache.dir`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Timeout of one origin request, in ms (`origin.timeout_ms`) [default: 5000].
    #[arg(long)]
    origin_timeout_ms: Option<u64>,
    /// Admin keys for the admin routes (repeatable; `server.admin_keys`; none: the admin routes are disabled).
    #[arg(long = "admin-key")]
    admin_keys: Vec<String>,
    /// The guest module file (`guest.module`) [default: the one `cargo xtask guest` builds].
    #[arg(long, conflicts_with = "module_digest")]
    module: Option<PathBuf>,
    /// Fetch the guest module from the origin (`GET /v1/modules/{digest}`) instead, verified by sha256 (`guest.module_digest`).
    #[arg(long)]
    module_digest: Option<String>,
    /// ed25519 public key (64 hex digits or base64) that fetched modules must be signed by (`guest.public_key`).
    #[arg(long)]
    public_key: Option<String>,
    /// Guest deadline per operation, in ms (`guest.deadline_ms`) [default: 10].
    #[arg(long)]
    guest_deadline_ms: Option<u64>,
    /// Guest memory cap per instance, in MiB (`guest.memory_mib`) [default: 64].
    #[arg(long)]
    guest_memory_mib: Option<u64>,
    /// `pooled` or `fresh` guest instances (`guest.instances`) [default: pooled].
    #[arg(long, value_parser = ["pooled", "fresh"])]
    instances: Option<String>,
    /// How long a plain-JSON feed request waits for the refined ranking, in ms (`feed.refine_deadline_ms`) [default: 150].
    #[arg(long)]
    refine_deadline_ms: Option<u64>,
    /// Largest request body in bytes, 413 beyond (`server.max_body_bytes`) [default: 1 MiB].
    #[arg(long)]
    max_body_bytes: Option<u64>,
    /// Requests served at once, 429 with Retry-After beyond (`server.max_in_flight`) [default: 1024].
    #[arg(long)]
    max_in_flight: Option<u64>,
}

impl ServeArgs {
    fn overrides(&self) -> Vec<(&'static str, figment::value::Value)> {
        let mut o: Vec<(&'static str, figment::value::Value)> = Vec::new();
        let s = |v: &str| figment::value::Value::from(v.to_string());
        if let Some(v) = &self.origin {
            o.push(("origin.url", s(v)));
        }
        if let Some(v) = self.listen {
            o.push(("server.listen", s(&v.to_string())));
        }
        if !self.admin_keys.is_empty() {
            o.push(("server.admin_keys", self.admin_keys.clone().into()));
        }
        if let Some(v) = &self.module {
            o.push(("guest.module", s(&v.display().to_string())));
        }
        if let Some(v) = &self.cache_dir {
            o.push(("cache.dir", s(&v.display().to_string())));
        }
        if let Some(v) = &self.module_digest {
            o.push(("guest.module_digest", s(v)));
        }
        if let Some(v) = &self.public_key {
            o.push(("guest.public_key", s(v)));
        }
        if let Some(v) = &self.instances {
            o.push(("guest.instances", s(v)));
        }
        for (key, v) in [
            ("cache.bytes", self.cache_bytes),
            ("origin.timeout_ms", self.origin_timeout_ms),
            ("guest.deadline_ms", self.guest_deadline_ms),
            ("guest.memory_mib", self.guest_memory_mib),
            ("feed.refine_deadline_ms", self.refine_deadline_ms),
            ("server.max_body_bytes", self.max_body_bytes),
            ("server.max_in_flight", self.max_in_flight),
        ] {
            if let Some(v) = v {
                o.push((key, v.into()));
            }
        }
        o
    }
}

#[derive(clap::Args, Debug)]
struct RankArgs {
    /// The guest module [default: the one `cargo xtask guest` builds].
    #[arg(long)]
    module: Option<PathBuf>,
    /// A bundle file (v1). Needs --model. Without it a synthetic bundle is
    /// generated (a build with the `synth` feature only).
    #[arg(long, requires = "model")]
    bundle: Option<PathBuf>,
    /// A model artifact file (v1).
    #[arg(long, requires = "bundle")]
    model: Option<PathBuf>,
    /// A rank context file (`EWCX`, see `edgewise_core::abi`): the user's session,
    /// seen items, region, time and k. Without it: an anonymous user, no history.
    #[arg(long, requires = "bundle")]
    context: Option<PathBuf>,
    /// Synthetic candidates to generate (feature `synth`).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    candidates: u32,
    /// Synthetic embedding dimension (feature `synth`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    dim: u16,
    /// Items to return [default: the context file's k, else 10].
    #[arg(short, long)]
    k: Option<u32>,
    /// Seed for the synthetic data and the user context (feature `synth`).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Also write the bundle, model and context ranked to this directory.
    #[arg(long)]
    write_to: Option<PathBuf>,
    /// Write the result's `EWRS` bytes (the core's encoding, the same from every build) to this file.
    #[arg(long)]
    result_out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Rank(a) => rank(a),
        Cmd::Serve(a) => serve(a),
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cfg = EdgeConfig::load(a.config.as_deref(), &a.overrides())?;
    let url = cfg.origin_url().to_string();
    let mut cache = Cache::new(&url, cfg.cache.bytes, std::time::Duration::from_millis(cfg.origin.timeout_ms))?
        .with_api_key(cfg.origin.api_key.clone());
    if let Some(dir) = &cfg.cache.dir {
        let (disk, report) = edgewise_edge::disk::DiskStore::open(dir, cfg.cache.disk_bytes)
            .with_context(|| format!("cannot open the disk cache in {} (cache.dir)", dir.display()))?;
        if let Some(why) = &report.discarded {
            tracing::warn!(why, "the disk cache's index could not be trusted");
        }
        tracing::info!(
            dir = %dir.display(),
            entries = report.entries,
            bytes = report.bytes,
            orphans_removed = report.orphans_removed,
            ms = report.elapsed.as_secs_f64() * 1e3,
            "disk cache opened"
        );
        cache = cache.with_disk(Arc::new(disk));
    }
    let public_key = cfg.guest.public_key.as_deref().map(edgewise_edge::modules::parse_public_key).transpose()?;
    let module_digest = cfg.guest.module_digest.as_deref().map(edgewise_edge::modules::parse_digest).transpose()?;
    let limits = Limits::from(&cfg.guest);
    let engine = guest::sandboxed_engine(&limits)?;
    let compiled_cache = match cfg.compiled_cache_dir() {
        Some(dir) => Some(CompiledCache::open(&dir).map_err(|e| anyhow::anyhow!("{e} (guest.compiled_cache_dir)"))?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let (bytes, source) = match module_digest {
            Some(d) => {
                let b = edgewise_edge::modules::fetch_verified(&cache, d, public_key.as_ref()).await?;
                (b, format!("origin:{d}"))
            }
            None => {
                let path = cfg.guest.module.clone().unwrap_or_else(guest::default_module_path);
                let b = std::fs::read(&path).with_context(|| {
                    format!("cannot read the guest module {} (build it with `cargo xtask guest`)", path.display())
                })?;
                (b, path.display().to_string())
            }
        };
        let t = Instant::now();
        let (module, from) = GuestModule::sandboxed_cached(&engine, &bytes, limits, compiled_cache.as_ref())?;
        module.canary().with_context(|| format!("the guest module {source} cannot rank (canary ranking failed)"))?;
        let declared = module.memory_maximum_bytes();
        tracing::info!(
            source,
            compiled = ?from,
            ms = t.elapsed().as_secs_f64() * 1e3,
            instances = ?cfg.guest.instances,
            memory_max_mib = declared.map(|b| b >> 20),
            "guest module loaded"
        );
        if let Some(max) = declared.filter(|max| *max < limits.memory_bytes as u64) {
            tracing::warn!(
                module_max_mib = max >> 20,
                configured_mib = cfg.guest.memory_mib,
                "the module declares a smaller memory maximum than guest.memory_mib: the module's binds"
            );
        }
        let tenants = Tenants::builder()
            .default_module(module, source)
            .options(GuestOptions::from(&cfg.guest))
            .sandbox(engine, limits)
            .compiled_cache(compiled_cache)
            .public_key(public_key)
            .build()?;
        let settings = ServerSettings::from(&cfg);
        if settings.admin_keys.is_empty() {
            tracing::info!("no admin key configured (server.admin_keys): the admin routes are disabled");
        }
        let state = Arc::new(EdgeState::new(cache, Arc::new(tenants), FeedConfig::from(&cfg.feed), settings)?);
        if !state.tokens.is_configured() {
            tracing::info!("no user-token key configured (auth.user_tokens): only anonymous feeds are served");
        }
        let listen = cfg.server.listen;
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(addr = %listener.local_addr()?, origin = url, "edge listening");
        // The disk cache's index, written every few seconds while entries change, and at shutdown.
        let flusher = {
            let cache = state.cache.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    every.tick().await;
                    let c = cache.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || c.flush_disk()).await {
                        tracing::warn!(error = %e, "cannot write the disk cache's index");
                    }
                }
            })
        };
        let disk_cache = state.cache.clone();
        edgewise_edge::server::serve(state, listener, shutdown_signal()).await?;
        flusher.abort();
        if let Err(e) = tokio::task::spawn_blocking(move || disk_cache.flush_disk()).await? {
            tracing::warn!(error = %e, "cannot write the disk cache's index at shutdown");
        }
        tracing::info!("shut down cleanly");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown signal received; draining in-flight requests");
}

fn rank(a: RankArgs) -> Result<()> {
    let now_ms = 1_700_000_000_000;
    let (bundle_bytes, model_bytes, ctx) = match (&a.bundle, &a.model) {
        (Some(b), Some(m)) => {
            let bundle = std::fs::read(b).with_context(|| format!("reading bundle {}", b.display()))?;
            let model = std::fs::read(m).with_context(|| format!("reading model {}", m.display()))?;
            let ctx = match &a.context {
                Some(c) => {
                    let bytes = std::fs::read(c).with_context(|| format!("reading context {}", c.display()))?;
                    let mut ctx = RankContext::default();
                    abi::decode_context(&bytes, &mut ctx)
                        .with_context(|| format!("the context file {} is invalid", c.display()))?;
                    ctx
                }
                None => RankContext::new(10, now_ms),
            };
            (bundle, model, ctx)
        }
        _ => synthetic(&a, now_ms)?,
    };
    let ctx = RankContext { k: a.k.unwrap_or(ctx.k), ..ctx };
    if let Some(dir) = &a.write_to {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut ctx_bytes = Vec::new();
        abi::encode_context(&ctx, &mut ctx_bytes);
        for (name, bytes) in [("bundle.ewb", &bundle_bytes), ("model.ewm", &model_bytes), ("context.ewcx", &ctx_bytes)]
        {
            let path = dir.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    let bundle = Bundle::decode(&bundle_bytes).context("the bundle is invalid")?;
    let model = Model::decode(&model_bytes).context("the model is invalid")?;
    let digest = model::digest(&model_bytes);

    // Native.
    let mut ranker = Ranker::new();
    let mut native = RankOutput::default();
    let t = Instant::now();
    ranker.rank(&model, &bundle, &ctx, &mut native).context("native ranking failed")?;
    let native_us = t.elapsed().as_secs_f64() * 1e6;

    // Guest.
    let path = a.module.clone().unwrap_or_else(guest::default_module_path);
    if !path.exists() {
        bail!("guest module not found at {}: build it with `cargo xtask guest` or pass --module", path.display());
    }
    let engine = guest::default_engine()?;
    let t = Instant::now();
    let module = GuestModule::from_file(&engine, &path)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut inst = module.instantiate()?;
    inst.load_model(&model_bytes)?;
    let t = Instant::now();
    let (guest_out, model_match) = inst.rank(&bundle_bytes, &ctx)?;
    let guest_us = t.elapsed().as_secs_f64() * 1e6;

    let mut nb = Vec::new();
    let mut gb = Vec::new();
    let native_match = ModelMatch::of(bundle.header().model_digest, digest);
    abi::encode_result(&native, native_match, &mut nb);
    abi::encode_result(&guest_out, model_match, &mut gb);

    let h = bundle.header();
    println!(
        "bundle: {} candidates, d={}, {} features, {} sources, {} bytes ({:.1} bytes/candidate)",
        bundle.len(),
        h.dim,
        h.n_features,
        h.n_sources,
        bundle_bytes.len(),
        bundle_bytes.len() as f64 / bundle.len().max(1) as f64
    );
    println!(
        "model:  sha256 {}, MLP {:?}, pre-rank keep {}, MMR λ {}, creator cap {}",
        digest,
        model.mlp.iter().map(|l| l.outputs).collect::<Vec<_>>(),
        model.prerank_keep,
        model.diversity.mmr_lambda,
        model.diversity.creator_cap
    );
    println!("guest:  {} (compiled in {compile_ms:.1} ms)", path.display());
    println!();
    println!(
        "{:>3}  {:>9}  {:>8}  {:>8}  {:>8}  {:>8}  {:>8}  sources",
        "#", "item", "score", "pre", "logit", "mmr-pen", "creator"
    );
    for (pos, it) in guest_out.items.iter().enumerate() {
        let row = it.row as usize;
        let mask = bundle.source_mask(row);
        let sources: Vec<&str> =
            SOURCE_NAMES.iter().enumerate().filter(|(j, _)| mask & (1 << j) != 0).map(|(_, n)| *n).collect();
        println!(
            "{:>3}  {:>9}  {:>8.4}  {:>8.4}  {:>8.4}  {:>8.4}  {:>8}  {}",
            pos + 1,
            it.id,
            it.score,
            it.pre_score,
            it.main_score,
            it.mmr_penalty,
            bundle.creator(row),
            sources.join(",")
        );
    }
    println!();
    let mut counts = [0usize; 7];
    for r in &guest_out.rows {
        counts[r.outcome as usize] += 1;
    }
    let order = [
        Outcome::Selected,
        Outcome::Seen,
        Outcome::BlockedCreator,
        Outcome::Region,
        Outcome::PreRankCut,
        Outcome::CreatorCap,
        Outcome::BelowTopK,
    ];
    let parts: Vec<String> = order.iter().map(|o| format!("{}: {}", o.as_str(), counts[*o as usize])).collect();
    println!("what happened to each candidate: {}", parts.join(", "));
    println!("native ranking: {native_us:.0} µs (first call); guest ranking: {guest_us:.0} µs (first call)");
    if nb == gb {
        println!("guest and native results are bit-identical ({} result bytes)", nb.len());
        if let Some(path) = &a.result_out {
            std::fs::write(path, &nb).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        Ok(())
    } else {
        bail!("guest and native results differ: this is a determinism bug")
    }
}

/// A synthetic bundle, model and context from `--candidates`, `--dim` and `--seed`.
#[cfg(feature = "synth")]
fn synthetic(a: &RankArgs, now_ms: u64) -> Result<(Vec<u8>, Vec<u8>, RankContext)> {
    use edgewise_core::synth;
    let spec = synth::Spec::new(a.candidates as usize, a.dim, a.seed);
    let bundle = synth::bundle(&spec, now_ms);
    let model = synth::model(&spec, &[64, 32], 200, a.seed).encode().context("encoding the synthetic model")?;
    Ok((bundle, model, synth::context(&spec, 10, now_ms, a.seed + 1)))
}

/// Without the `synth` feature there is nothing to rank but files.
#[cfg(not(feature = "synth"))]
fn synthetic(_: &RankArgs, _: u64) -> Result<(Vec<u8>, Vec<u8>, RankContext)> {
    bail!(
        "no --bundle and --model given, and this edgewise-edge was built without the `synth` feature that \
         generates them: pass the files, or build with `--features synth`"
    )
}
