//! The candidates endpoint under open-loop load on loopback.
//!
//! `cargo bench -p edgewise-origin --bench candidates [-- --items N --seconds S]`
//!
//! Loads N synthetic clustered items (default 100,000, d = 64) and 2,000 users
//! with 20 interactions each into a fresh data directory, serves it on
//! 127.0.0.1, then sends `GET /v1/users/{u}/candidates?k=500&region=r` at fixed
//! rates. The load is open-loop: requests leave on a fixed schedule whether or
//! not earlier ones have returned, and latency is measured from each request's
//! scheduled time, so a slow server cannot hide its queueing (no coordinated
//! omission). The rate doubles until p99 passes 50 ms. Prints the latency
//! table, then each source's and each stage's mean latency at each rate (from
//! the server's Prometheus histograms), which shows where the time goes.

use std::time::{Duration, Instant};

use edgewise_core::synth;
use edgewise_http::auth::{TokenSpec, mint_hs256};
use edgewise_origin::Config;
use edgewise_origin::item::Item;
use edgewise_origin::trending::trending_merge;
use edgewise_origin::user::{Event, EventKind};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let n_items = arg("--items", 100_000) as usize;
    let seconds = arg("--seconds", 5);
    let n_users = 2_000u64;
    let dir = std::env::temp_dir().join(format!("ew-bench-candidates-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config { data_dir: dir.clone(), ..Config::default() };
    cfg.index.dim = 64;
    // Every request carries its user's token, as a real client's would.
    const SECRET: &str = "candidates-bench-secret-32-bytes!!";
    cfg.auth.user_tokens.hmac_secrets = vec![SECRET.into()];
    let tokens: Vec<String> =
        (0..n_users).map(|u| mint_hs256(SECRET.as_bytes(), &TokenSpec::new(u, 3600)).expect("a token mints")).collect();
    let spec = synth::Spec {
        n: n_items,
        dim: 64,
        n_features: 2,
        n_sources: 5,
        clusters: 64,
        creators: 5_000,
        regions: 8,
        seed: 1,
    };
    eprintln!("loading {n_items} items and {n_users} users ...");
    let state = edgewise_origin::open(cfg.clone()).expect("store");
    let embs = synth::item_embeddings(&spec);
    let items: Vec<Item> = embs
        .into_iter()
        .enumerate()
        .map(|(i, e)| Item {
            id: i as u64,
            embedding: e,
            content: None,
            creator: (i % 5_000) as u32,
            categories: vec![(i % 64) as u32],
            region_mask: if i % 5 == 0 { 1 << (i % 8) } else { u32::MAX },
            created_at_ms: 1_700_000_000_000 + i as u64,
            features: vec![(i % 100) as f32 / 100.0, 0.5],
        })
        .collect();
    for chunk in items.chunks(10_000) {
        state.store.put_items(chunk).expect("put");
    }
    edgewise_origin::recover(&state, |_, _| {}).expect("recover");
    let now = edgewise_origin::http::now_ms();
    let mut rng = 7u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let events: Vec<Event> = (0..n_users)
        .flat_map(|u| {
            let home = next() % 64;
            (0..20u64)
                .map(|j| Event {
                    event_id: format!("{u}-{j}"),
                    user: u,
                    item: (home + 64 * (next() % (n_items as u64 / 64))) % n_items as u64,
                    kind: if j % 3 == 0 { EventKind::Like } else { EventKind::Click },
                    time: now - 3_600_000 + j * 1000,
                    region: (u % 8) as u8,
                    dwell_ms: None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let session = state.session;
    let half = cfg.retrieval.trending_half_life_s * 1000.0;
    for chunk in events.chunks(5_000) {
        let (_, bumped) = state
            .store
            .apply_events(
                chunk,
                |e, st| st.apply(e, state.catalogue.get(e.item).as_deref(), &session),
                |c, b| trending_merge(c, b, half),
            )
            .expect("events");
        for ((r, i), v) in bumped {
            state.catalogue.set_trending(r, i, v);
        }
    }

    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let st2 = state.clone();
    server_rt.spawn(async move { edgewise_origin::serve(st2, listener, std::future::pending()).await });

    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("client");
    println!();
    println!(
        "GET /v1/users/{{u}}/candidates?k=500 — {n_items} items (d = 64), {n_users} users, open-loop on loopback, {seconds} s per rate"
    );
    println!();
    println!("| offered req/s | completed | p50 ms | p99 ms | max ms | errors |");
    println!("|---------------|-----------|--------|--------|--------|--------|");
    let mut rate = 25u64;
    let mut rates = Vec::new();
    let mut per_source: Vec<(String, Vec<f64>)> = Vec::new();
    let mut before = latency_sums(&state);
    loop {
        let (lat, errors) = run_rate(&client_rt, &client, addr, rate, seconds, &tokens);
        let after = latency_sums(&state);
        rates.push(rate);
        for ((name, n1, s1), (_, n0, s0)) in after.iter().zip(&before) {
            let mean = if n1 > n0 { (s1 - s0) / (n1 - n0) as f64 * 1e3 } else { f64::NAN };
            match per_source.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => v.push(mean),
                None => per_source.push((name.clone(), vec![mean])),
            }
        }
        before = after;
        let mut l = lat.clone();
        let (p50, p99, max) = (percentile(&mut l, 0.5), percentile(&mut l, 0.99), percentile(&mut l, 1.0));
        println!("| {rate:>13} | {:>9} | {p50:>6.1} | {p99:>6.1} | {max:>6.1} | {errors:>6} |", lat.len());
        if p99 > 50.0 || errors > lat.len() / 10 || rate >= 12_800 {
            break;
        }
        rate *= 2;
    }
    println!();
    println!("the last row is the first rate whose p99 passed 50 ms (or the cap)");
    // Where the time goes: each source's mean latency at each rate (deltas of /metrics' histograms).
    println!();
    print!("| mean ms at offered req/s |");
    for r in &rates {
        print!(" {r} |");
    }
    println!();
    println!("|---|{}", "---:|".repeat(rates.len()));
    for (name, means) in &per_source {
        print!("| {name} |");
        for m in means {
            print!(" {m:.2} |");
        }
        println!();
    }
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// (name, calls, total seconds) of every source, of each stage of a personal
/// bundle (`/metrics`' `personal_bundle_stage_seconds`), and of the whole
/// request, so far.
fn latency_sums(state: &edgewise_origin::AppState) -> Vec<(String, u64, f64)> {
    let mut v = Vec::new();
    for name in edgewise_core::bundle::SOURCE_NAMES.iter().take(5) {
        if let Ok(h) = state.metrics.source_seconds.get_metric_with_label_values(&[name]) {
            v.push((name.to_string(), h.get_sample_count(), h.get_sample_sum()));
        }
    }
    for stage in ["user", "retrieve", "build", "publish"] {
        if let Ok(h) = state.metrics.personal_stage_seconds.get_metric_with_label_values(&[stage]) {
            v.push((format!("stage: {stage}"), h.get_sample_count(), h.get_sample_sum()));
        }
    }
    if let Ok(h) = state.metrics.http_seconds.get_metric_with_label_values(&["/v1/users/{id}/candidates", "200"]) {
        v.push(("whole request (server side)".to_string(), h.get_sample_count(), h.get_sample_sum()));
    }
    v
}

/// Offers `rate` requests per second for `seconds`. The schedule is kept by
/// this (the main) thread with `std::thread::sleep`, which wakes within tens of
/// microseconds, and each request is handed to the client runtime at its time:
/// a tokio timer rounds every wake-up up to its next millisecond tick, and
/// since latency counts from the scheduled time, that lateness (half a
/// millisecond on average) would be charged to the server.
fn run_rate(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    rate: u64,
    seconds: u64,
    tokens: &[String],
) -> (Vec<f64>, usize) {
    let users = tokens.len() as u64;
    let total = rate * seconds;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + gap * i as u32;
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        }
        let c = client.clone();
        let user = (i * 7919) % users;
        let url = format!("http://{addr}/v1/users/{user}/candidates?k=500&region={}", i % 8);
        let token = tokens[user as usize].clone();
        tasks.push(rt.spawn(async move {
            let ok = match c.get(url).bearer_auth(token).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            (ok, scheduled.elapsed().as_secs_f64() * 1e3)
        }));
    }
    rt.block_on(async {
        let (mut lat, mut errors) = (Vec::new(), 0);
        for t in tasks {
            match t.await {
                Ok((true, ms)) => lat.push(ms),
                _ => errors += 1,
            }
        }
        (lat, errors)
    })
}
