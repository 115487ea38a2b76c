//! Experiments at the origin: definitions (variants with their model and
//! ranking parameters, allocations, a ramp schedule, start and stop times),
//! validated, kept in the store, and evaluated per user with the core's
//! assignment ([`edgewise_core::experiment::assign`]), so the origin, the
//! edges and the browser put every user in the same variant.
//!
//! Experiments on one **layer** must not run at overlapping times: a user is
//! in at most one experiment per layer, so two experiments that change the
//! same thing never confound each other. Different layers are independent
//! (each experiment hashes users with its own salt).
//!
//! The **ramp** enrols a growing share of users (for example 5% → 10% → 30%
//! → 50% → 100%); it never goes down, so an enrolled user stays enrolled,
//! in the same variant, until the experiment stops.

use edgewise_core::Digest;
use edgewise_core::experiment::{self, Assignment, BUCKETS, MAX_VARIANTS};
use serde::{Deserialize, Serialize};

/// The longest experiment name.
pub const MAX_NAME: usize = 64;
/// The most steps a ramp may have.
pub const MAX_RAMP_STEPS: usize = 16;

/// What `PUT /v1/experiments/{name}` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Experiments on the same layer may not run at overlapping times (default `default`).
    #[serde(default)]
    pub layer: Option<String>,
    /// The sticky hash's salt (default: derived from the name). Change it to reshuffle users.
    #[serde(default)]
    pub salt: Option<u64>,
    /// 1–16 variants; the first is the control the others are compared with.
    pub variants: Vec<VariantDef>,
    /// The share of users enrolled from each time on, ascending in time and
    /// never decreasing (default: everyone from `start_ms`).
    #[serde(default)]
    pub ramp: Vec<RampStep>,
    /// When the experiment starts, ms since the epoch.
    pub start_ms: u64,
    /// When it stops (default: never), after `start_ms`.
    #[serde(default)]
    pub stop_ms: Option<u64>,
}

/// One variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    /// 1–32 characters of `a-z`, `0-9`, `-`, `_`; unique in the experiment.
    pub name: String,
    /// Its share of the enrolled users, in percent with at most two decimals; the shares sum to 100.
    pub percent: f64,
    /// The model it ranks with (a registered model's sha256; default: the stable one).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub model: Option<Digest>,
    /// Candidates to retrieve and rank (1..=`retrieval.max_k`; default: the origin's).
    #[serde(default)]
    pub candidates: Option<usize>,
    /// The MMR trade-off λ in [0, 1] (default: the model's).
    #[serde(default)]
    pub mmr_lambda: Option<f32>,
    /// The session's share of the query blend in [0, 1] (default: the core's).
    #[serde(default)]
    pub session_share: Option<f32>,
}

/// One step of a ramp.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RampStep {
    /// From when, ms since the epoch.
    pub at_ms: u64,
    /// The share of users enrolled, in percent with at most two decimals.
    pub percent: f64,
}

/// A stored experiment: its definition with every default resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Experiment {
    /// Its name.
    pub name: String,
    /// Its layer.
    pub layer: String,
    /// The sticky hash's salt.
    pub salt: u64,
    /// The variants, control first.
    pub variants: Vec<VariantDef>,
    /// The ramp (at least one step).
    pub ramp: Vec<RampStep>,
    /// Start, ms since the epoch.
    pub start_ms: u64,
    /// Stop, ms since the epoch (`None`: never).
    pub stop_ms: Option<u64>,
}

/// Where an experiment is at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before its start.
    Scheduled,
    /// Between start and stop.
    Running,
    /// After its stop.
    Stopped,
}

/// A share in percent with at most two decimals, as basis points.
fn basis_points(what: &str, percent: f64) -> Result<u32, String> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(format!("{what} = {percent} must be a percentage in 0..=100"));
    }
    let bp = (percent * 100.0).round();
    if (percent * 100.0 - bp).abs() > 1e-6 {
        return Err(format!("{what} = {percent} has more than two decimals"));
    }
    Ok(bp as u32)
}

fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(format!("{what} {name:?} must be 1–{max} characters of a-z, 0-9, '-' and '_'")) }
}

/// The default salt of experiment `name`: the first 8 bytes of the sha256
/// of `"edgewise.experiment\0"` and the name, little-endian.
pub fn default_salt(name: &str) -> u64 {
    let mut bytes = b"edgewise.experiment\0".to_vec();
    bytes.extend_from_slice(name.as_bytes());
    let d = Digest::of(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_bytes()[..8]);
    u64::from_le_bytes(first)
}

impl Experiment {
    /// Checks `def` as experiment `name` and resolves its defaults. `model_known`
    /// says whether a model digest is registered; `max_candidates` is
    /// `retrieval.max_k`. The error names the field and the rule.
    pub fn new(
        name: &str,
        def: Definition,
        model_known: impl Fn(&Digest) -> bool,
        max_candidates: usize,
    ) -> Result<Self, String> {
        check_name("the experiment name", name, MAX_NAME)?;
        let layer = def.layer.unwrap_or_else(|| "default".to_string());
        check_name("the layer", &layer, MAX_NAME)?;
        if def.variants.is_empty() || def.variants.len() > MAX_VARIANTS {
            return Err(format!("an experiment needs 1–{MAX_VARIANTS} variants, not {}", def.variants.len()));
        }
        let mut sum = 0u32;
        for (i, v) in def.variants.iter().enumerate() {
            check_name(&format!("variants[{i}].name"), &v.name, 32)?;
            if def.variants[..i].iter().any(|w| w.name == v.name) {
                return Err(format!("variants[{i}].name {:?} is used twice", v.name));
            }
            sum += basis_points(&format!("variants[{i}].percent"), v.percent)?;
            if let Some(d) = &v.model
                && !model_known(d)
            {
                return Err(format!("variants[{i}].model {d} is not a registered model (PUT /v1/models)"));
            }
            if let Some(c) = v.candidates
                && !(1..=max_candidates).contains(&c)
            {
                return Err(format!("variants[{i}].candidates = {c} must be in 1..={max_candidates}"));
            }
            for (field, value) in [("mmr_lambda", v.mmr_lambda), ("session_share", v.session_share)] {
                if let Some(x) = value
                    && !(x.is_finite() && (0.0..=1.0).contains(&x))
                {
                    return Err(format!("variants[{i}].{field} = {x} must be in [0, 1]"));
                }
            }
        }
        if sum != BUCKETS {
            return Err(format!("the variants' percentages sum to {}, not 100", f64::from(sum) / 100.0));
        }
        if let Some(stop) = def.stop_ms
            && stop <= def.start_ms
        {
            return Err(format!("stop_ms = {stop} must be after start_ms = {}", def.start_ms));
        }
        if def.ramp.len() > MAX_RAMP_STEPS {
            return Err(format!("a ramp has at most {MAX_RAMP_STEPS} steps, not {}", def.ramp.len()));
        }
        let mut before: Option<(u64, u32)> = None;
        for (i, step) in def.ramp.iter().enumerate() {
            let bp = basis_points(&format!("ramp[{i}].percent"), step.percent)?;
            if step.at_ms < def.start_ms {
                return Err(format!("ramp[{i}].at_ms = {} is before start_ms = {}", step.at_ms, def.start_ms));
            }
            if let Some((at, b)) = before {
                if step.at_ms <= at {
                    return Err(format!("ramp[{i}].at_ms must be after ramp[{}].at_ms", i - 1));
                }
                if bp < b {
                    return Err(format!(
                        "ramp[{i}].percent goes down from {}: a ramp never goes down (enrolled users would leave)",
                        f64::from(b) / 100.0
                    ));
                }
            }
            before = Some((step.at_ms, bp));
        }
        let ramp = if def.ramp.is_empty() { vec![RampStep { at_ms: def.start_ms, percent: 100.0 }] } else { def.ramp };
        Ok(Self {
            name: name.to_string(),
            salt: def.salt.unwrap_or_else(|| default_salt(name)),
            layer,
            variants: def.variants,
            ramp,
            start_ms: def.start_ms,
            stop_ms: def.stop_ms,
        })
    }

    /// Whether this experiment and `other` share a layer and run at overlapping times.
    pub fn overlaps(&self, other: &Experiment) -> bool {
        let (a_end, b_end) = (self.stop_ms.unwrap_or(u64::MAX), other.stop_ms.unwrap_or(u64::MAX));
        self.layer == other.layer && self.start_ms < b_end && other.start_ms < a_end
    }

    /// The phase at `now_ms`.
    pub fn phase(&self, now_ms: u64) -> Phase {
        if now_ms < self.start_ms {
            Phase::Scheduled
        } else if self.stop_ms.is_some_and(|s| now_ms >= s) {
            Phase::Stopped
        } else {
            Phase::Running
        }
    }

    /// The share of users enrolled at `now_ms`, in basis points (0 unless running).
    pub fn ramp_bp(&self, now_ms: u64) -> u32 {
        if self.phase(now_ms) != Phase::Running {
            return 0;
        }
        self.ramp.iter().take_while(|s| s.at_ms <= now_ms).last().map_or(0, |s| {
            // Checked when the experiment was made: a percentage with two decimals.
            (s.percent * 100.0).round() as u32
        })
    }

    /// The variants' allocations, in basis points.
    pub fn allocations_bp(&self) -> Vec<u32> {
        self.variants.iter().map(|v| (v.percent * 100.0).round() as u32).collect()
    }

    /// Where `user` is at `now_ms`.
    pub fn assign(&self, user: u64, now_ms: u64) -> Assignment {
        // The allocations and the ramp were checked when the experiment was made.
        experiment::assign(user, self.salt, self.ramp_bp(now_ms), &self.allocations_bp()).unwrap_or(Assignment::Outside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(variants: &[(&str, f64)]) -> Definition {
        Definition {
            layer: None,
            salt: None,
            variants: variants
                .iter()
                .map(|(n, p)| VariantDef {
                    name: (*n).to_string(),
                    percent: *p,
                    model: None,
                    candidates: None,
                    mmr_lambda: None,
                    session_share: None,
                })
                .collect(),
            ramp: Vec::new(),
            start_ms: 1_000,
            stop_ms: None,
        }
    }

    fn make(d: Definition) -> Result<Experiment, String> {
        Experiment::new("exp", d, |_| false, 5_000)
    }

    #[test]
    fn bad_definitions_are_refused_with_the_rule() {
        let cases: Vec<(Definition, &str)> = vec![
            (def(&[]), "1–16 variants"),
            (def(&[("a", 50.0), ("b", 40.0)]), "sum to 90, not 100"),
            (def(&[("a", 50.0), ("a", 50.0)]), "used twice"),
            (def(&[("A", 100.0)]), "a-z"),
            (def(&[("a", 33.333), ("b", 66.667)]), "two decimals"),
            (def(&[("a", -1.0), ("b", 101.0)]), "0..=100"),
            (Definition { stop_ms: Some(1_000), ..def(&[("a", 100.0)]) }, "after start_ms"),
            (
                Definition {
                    ramp: vec![RampStep { at_ms: 2_000, percent: 10.0 }, RampStep { at_ms: 3_000, percent: 5.0 }],
                    ..def(&[("a", 100.0)])
                },
                "never goes down",
            ),
            (
                Definition { ramp: vec![RampStep { at_ms: 10, percent: 10.0 }], ..def(&[("a", 100.0)]) },
                "before start_ms",
            ),
            (
                Definition {
                    ramp: vec![RampStep { at_ms: 2_000, percent: 10.0 }, RampStep { at_ms: 2_000, percent: 20.0 }],
                    ..def(&[("a", 100.0)])
                },
                "must be after",
            ),
        ];
        for (d, want) in cases {
            let err = make(d.clone()).expect_err(want);
            assert!(err.contains(want), "{want}: {err}");
        }
        let mut with_model = def(&[("a", 100.0)]);
        with_model.variants[0].model = Some(Digest::of(b"m"));
        assert!(make(with_model.clone()).expect_err("unknown").contains("not a registered model"));
        assert!(Experiment::new("exp", with_model, |_| true, 10).is_ok());
        let mut bad = def(&[("a", 100.0)]);
        bad.variants[0].candidates = Some(0);
        assert!(make(bad.clone()).expect_err("candidates").contains("candidates = 0"));
        bad.variants[0].candidates = None;
        bad.variants[0].mmr_lambda = Some(f32::NAN);
        assert!(make(bad).expect_err("lambda").contains("mmr_lambda"));
        assert!(Experiment::new("Bad Name", def(&[("a", 100.0)]), |_| false, 10).is_err());
    }

    #[test]
    fn the_ramp_phase_and_overlap_follow_the_schedule() {
        let e = make(Definition {
            ramp: vec![RampStep { at_ms: 1_000, percent: 5.0 }, RampStep { at_ms: 2_000, percent: 50.5 }],
            stop_ms: Some(3_000),
            ..def(&[("control", 50.0), ("treatment", 50.0)])
        })
        .expect("valid");
        assert_eq!(e.salt, default_salt("exp"));
        assert_eq!(e.layer, "default");
        assert_eq!(
            [e.ramp_bp(999), e.ramp_bp(1_000), e.ramp_bp(1_999), e.ramp_bp(2_000), e.ramp_bp(3_000)],
            [0, 500, 500, 5_050, 0]
        );
        assert_eq!([e.phase(999), e.phase(1_500), e.phase(3_000)], [Phase::Scheduled, Phase::Running, Phase::Stopped]);
        let everyone = make(def(&[("a", 100.0)])).expect("valid");
        assert_eq!(everyone.ramp_bp(1_000), 10_000, "no ramp: everyone from the start");
        // Users enrolled at 5% are in the same variant at 50.5%; nobody is enrolled after the stop.
        for user in 0..2_000u64 {
            let (early, late) = (e.assign(user, 1_500), e.assign(user, 2_500));
            if early != Assignment::Outside {
                assert_eq!(early, late, "user {user}");
            }
            assert_eq!(e.assign(user, 3_000), Assignment::Outside);
            assert_eq!(e.assign(user, 2_500), experiment::assign(user, e.salt, 5_050, &[5_000, 5_000]).expect("ok"));
        }
        let later = make(Definition { start_ms: 3_000, ..def(&[("a", 100.0)]) }).expect("valid");
        assert!(!e.overlaps(&later), "one stops when the other starts");
        assert!(everyone.overlaps(&later), "open-ended on the same layer");
        let other_layer = Experiment { layer: "other".into(), ..later };
        assert!(!everyone.overlaps(&other_layer));
    }
}
