//! Choosing between the GPU path and the CPU core, in one place.
//!
//! [`AnyRanker`] takes a [`Choice`] (`auto | gpu | cpu`, as configuration
//! spells it) and says, for every ranking, which [`Path`] ran:
//! - `cpu`: the core alone; no GPU is looked for.
//! - `gpu`: the GPU path or an error; a GPU failure is returned, not hidden.
//! - `auto`: the GPU path when an adapter works, else the core. A GPU failure
//!   (no adapter, out of memory, device lost, …) falls back to the core and is
//!   reported in the [`Path`], never thrown. After a failure that leaves the
//!   device unusable, later rankings go straight to the core.
//!
//! Input the core refuses is refused on every path, with the core's error.
//! Both paths give byte-identical results, so the choice is about speed only.

use std::fmt;
use std::str::FromStr;

use edgewise_core::bundle::Bundle;
use edgewise_core::model::Model;
use edgewise_core::rank::{RankContext, RankOutput, Ranker};

use crate::gpu::{GpuBundle, GpuError, GpuOptions, GpuRanker};

/// Which path to rank on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// The GPU when one works, else the CPU.
    Auto,
    /// The GPU, or an error.
    Gpu,
    /// The CPU core only.
    #[default]
    Cpu,
}

impl FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "gpu" => Ok(Self::Gpu),
            "cpu" | "off" => Ok(Self::Cpu),
            other => Err(format!("unknown ranker {other:?}: expected \"auto\", \"gpu\" or \"cpu\"")),
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Gpu => "gpu",
            Self::Cpu => "cpu",
        })
    }
}

/// Which path a ranking took.
#[derive(Debug, Clone)]
pub enum Path {
    /// The GPU scan on this adapter, finished by the core.
    Gpu {
        /// The adapter's name.
        adapter: String,
    },
    /// The CPU core.
    Cpu {
        /// Why not the GPU: `None` when the CPU was chosen, else the GPU
        /// failure the ranking fell back from.
        fallback: Option<GpuError>,
    },
}

impl Path {
    /// `"gpu"` or `"cpu"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Gpu { .. } => "gpu",
            Self::Cpu { .. } => "cpu",
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gpu { adapter } => write!(f, "gpu ({adapter})"),
            Self::Cpu { fallback: None } => f.write_str("cpu"),
            Self::Cpu { fallback: Some(e) } => write!(f, "cpu (fell back: {e})"),
        }
    }
}

/// A bundle made ready for an [`AnyRanker`]: resident on the GPU when the
/// GPU path is in use.
#[derive(Debug)]
pub struct Prepared<'a> {
    bundle: Bundle<'a>,
    gpu: Option<GpuBundle<'a>>,
    /// Why the bundle is not on the GPU under `auto`, if it failed to go there.
    fallback: Option<GpuError>,
}

impl Prepared<'_> {
    /// The bundle.
    pub fn bundle(&self) -> &Bundle<'_> {
        &self.bundle
    }
}

/// The ranker behind a [`Choice`]: the GPU path, the CPU core, or both.
#[derive(Debug)]
pub struct AnyRanker {
    choice: Choice,
    gpu: Option<GpuRanker>,
    /// Why there is no GPU under `auto`.
    gpu_error: Option<GpuError>,
    cpu: Ranker,
}

impl AnyRanker {
    /// A ranker for `choice`. Under `gpu` a GPU that cannot be set up is an
    /// error; under `auto` it is remembered and rankings use the CPU.
    pub fn new(choice: Choice, options: &GpuOptions) -> Result<Self, GpuError> {
        let (gpu, gpu_error) = match choice {
            Choice::Cpu => (None, None),
            Choice::Gpu => (Some(GpuRanker::new(options)?), None),
            Choice::Auto => match GpuRanker::new(options) {
                Ok(g) => (Some(g), None),
                Err(e) => (None, Some(e)),
            },
        };
        Ok(Self { choice, gpu, gpu_error, cpu: Ranker::new() })
    }

    /// What was chosen.
    pub fn choice(&self) -> Choice {
        self.choice
    }

    /// The GPU ranker, when the GPU path is in use.
    pub fn gpu(&self) -> Option<&GpuRanker> {
        self.gpu.as_ref()
    }

    /// The GPU ranker, mutably (to [`destroy`](GpuRanker::destroy) it, say).
    pub fn gpu_mut(&mut self) -> Option<&mut GpuRanker> {
        self.gpu.as_mut()
    }

    /// The path rankings take now: the GPU's adapter, or the CPU and why.
    pub fn path(&self) -> Path {
        match &self.gpu {
            Some(g) => Path::Gpu { adapter: g.adapter().name.clone() },
            None => Path::Cpu { fallback: self.gpu_error.clone() },
        }
    }

    /// Under `auto`, gives up the GPU after `e` if it left the device unusable.
    fn give_up(&mut self, e: &GpuError) {
        if matches!(e, GpuError::DeviceLost { .. } | GpuError::Timeout(_) | GpuError::Unusable(_)) {
            self.gpu = None;
            self.gpu_error = Some(e.clone());
        }
    }

    /// Makes `bundle` ready to rank: uploads it when the GPU path is in use.
    /// Under `auto` an upload failure is remembered, and this bundle's
    /// rankings use the CPU.
    pub fn prepare<'a>(&mut self, bundle: Bundle<'a>) -> Result<Prepared<'a>, GpuError> {
        let Some(g) = self.gpu.as_mut() else {
            return Ok(Prepared { bundle, gpu: None, fallback: None });
        };
        match g.upload(bundle) {
            Ok(gb) => Ok(Prepared { bundle, gpu: Some(gb), fallback: None }),
            Err(e) if self.choice == Choice::Auto => {
                self.give_up(&e);
                Ok(Prepared { bundle, gpu: None, fallback: Some(e) })
            }
            Err(e) => Err(e),
        }
    }

    /// Ranks a prepared bundle, writing into `out`, and says which path ran.
    pub fn rank(
        &mut self,
        model: &Model,
        prepared: &Prepared<'_>,
        ctx: &RankContext,
        out: &mut RankOutput,
    ) -> Result<Path, GpuError> {
        let fallback = match (self.gpu.as_mut(), prepared.gpu.as_ref()) {
            (Some(g), Some(gb)) => match g.rank(model, gb, ctx, out) {
                Ok(()) => return Ok(Path::Gpu { adapter: g.adapter().name.clone() }),
                Err(e @ GpuError::Refused(_)) => return Err(e),
                Err(e) if self.choice == Choice::Auto => {
                    self.give_up(&e);
                    Some(e)
                }
                Err(e) => return Err(e),
            },
            (Some(_), None) if self.choice == Choice::Gpu => {
                return Err(GpuError::Unusable("the bundle was prepared without the GPU".into()));
            }
            (Some(_), None) => prepared.fallback.clone(),
            (None, _) => self.gpu_error.clone().or_else(|| prepared.fallback.clone()),
        };
        self.cpu.rank(model, &prepared.bundle, ctx, out)?;
        Ok(Path::Cpu { fallback })
    }
}
