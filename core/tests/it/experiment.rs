//! Experiment decisions as committed vectors: `core/tests/golden/experiment/vectors.json`
//! holds assignments, team-draft interleavings and Thompson-sampling
//! decisions and shares for drawn inputs. This test checks the native core
//! against them; the npm package's tests check the wasm core against the
//! same file, so every place that decides an experiment agrees bit for bit.
//! Regenerate (only when a decision rule *intentionally* changes) with
//! `EDGEWISE_BLESS=1 cargo test -p edgewise-core --test it experiment`.

use std::path::PathBuf;

use edgewise_core::experiment::{self, Arm, Assignment, Team};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/experiment/vectors.json")
}

/// u64s as decimal strings (JavaScript reads them as BigInt).
fn ids(v: &[u64]) -> Value {
    Value::from(v.iter().map(|x| x.to_string()).collect::<Vec<_>>())
}

fn vectors() -> Value {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(2026);
    let mut assign = Vec::new();
    for _ in 0..200 {
        let (user, salt) = (rng.random::<u64>(), rng.random::<u64>());
        let ramp = [0, 500, 1_000, 3_000, 5_000, 10_000][rng.random_range(0..6)];
        let n = rng.random_range(1..5);
        let mut alloc: Vec<u32> = (0..n - 1).map(|_| rng.random_range(0..=10_000 / n as u32)).collect();
        alloc.push(10_000 - alloc.iter().sum::<u32>());
        let got = match experiment::assign(user, salt, ramp, &alloc).expect("a valid allocation") {
            Assignment::Outside => -1,
            Assignment::Variant(i) => i32::from(i),
        };
        assign.push(json!({"user": user.to_string(), "salt": salt.to_string(), "ramp_bp": ramp, "allocations_bp": alloc, "variant": got}));
    }
    let mut drafts = Vec::new();
    let mut out = Vec::new();
    for _ in 0..50 {
        let a: Vec<u64> = (0..rng.random_range(0..25)).map(|_| rng.random_range(0..40)).collect();
        let b: Vec<u64> = (0..rng.random_range(0..25)).map(|_| rng.random_range(0..40)).collect();
        let (k, seed) = (rng.random_range(0..30usize), rng.random::<u64>());
        experiment::team_draft(&a, &b, k, seed, &mut out);
        let items: Vec<u64> = out.iter().map(|p| p.0).collect();
        let teams: Vec<u8> = out.iter().map(|p| u8::from(p.1 == Team::B)).collect();
        drafts.push(
            json!({"a": ids(&a), "b": ids(&b), "k": k, "seed": seed.to_string(), "items": ids(&items), "teams": teams}),
        );
    }
    let mut bandits = Vec::new();
    for _ in 0..50 {
        let n = rng.random_range(1..5);
        let exposures: Vec<u64> = (0..n).map(|_| rng.random_range(0..5_000)).collect();
        let clicks: Vec<u64> = exposures.iter().map(|&e| rng.random_range(0..=e / 5)).collect();
        let arms: Vec<Arm> = clicks.iter().zip(&exposures).map(|(&c, &e)| Arm { clicks: c, exposures: e }).collect();
        let seed = rng.random::<u64>();
        let choice = experiment::thompson(&arms, seed).expect("arms");
        // Shares are wins / draws exactly; the wins are integers, which JSON keeps exactly.
        let wins: Vec<u32> =
            experiment::thompson_shares(&arms, 200, seed).iter().map(|s| (s * 200.0).round() as u32).collect();
        bandits.push(json!({"clicks": ids(&clicks), "exposures": ids(&exposures), "seed": seed.to_string(), "choice": choice, "draws": 200, "wins": wins}));
    }
    json!({"assign": assign, "team_draft": drafts, "thompson": bandits})
}

#[test]
fn experiment_decisions_match_the_committed_vectors() {
    let got = vectors();
    if std::env::var_os("EDGEWISE_BLESS").is_some() {
        std::fs::create_dir_all(path().parent().expect("dir")).expect("create golden dir");
        std::fs::write(path(), serde_json::to_string_pretty(&got).expect("json") + "\n").expect("write");
    }
    let text =
        std::fs::read_to_string(path()).unwrap_or_else(|e| panic!("{}: {e} (see this file's docs)", path().display()));
    let want: Value = serde_json::from_str(&text).expect("the vectors are JSON");
    for part in ["assign", "team_draft", "thompson"] {
        let (g, w) = (got[part].as_array().expect("array"), want[part].as_array().expect("array"));
        assert_eq!(g.len(), w.len(), "{part}");
        for (i, (g, w)) in g.iter().zip(w).enumerate() {
            assert_eq!(g, w, "{part}[{i}] differs from the committed vector");
        }
    }
    let enrolled = want["assign"].as_array().expect("array").iter().filter(|v| v["variant"] != -1).count();
    println!("experiment vectors: {enrolled} of 200 users enrolled, 50 interleavings, 50 bandit decisions");
}
