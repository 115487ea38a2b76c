//! The model artifact: the compiled ranking plan that the pipeline runs.
//!
//! A model holds every learned or tuned number the [`crate::rank`] pipeline
//! needs: the linear pre-ranker, the MLP main ranker, Platt calibration and the
//! diversity parameters. It is served content-addressed: its name is the sha256
//! of its encoded bytes ([`digest`]).
//!
//! # Layout
//! Little-endian throughout. Version 2 adds the optional history block
//! (flag bit 1, body part 3); a model without one is written as version 1,
//! byte for byte what this format always wrote, and a version-2 model
//! without one is refused (every model has exactly one encoding).
//!
//! ## Header (64 bytes)
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic, `b"EWMODEL\0"` |
//! | 8 | `u16` | version ([`VERSION`]); readers accept [`OLDEST_SUPPORTED_VERSION`]..=[`VERSION`] |
//! | 10 | `u16` | flags: bit 0 = the MLP input includes the embedding interaction (element-wise product); bit 1 (version 2) = a history block follows the layers |
//! | 12 | `u32` | header length, 64 |
//! | 16 | `u64` | feature-schema hash; must equal the bundle's |
//! | 24 | `u16` | embedding dimension `d` |
//! | 26 | `u16` | features per row `f` |
//! | 28 | `u8` | source slots `s` |
//! | 29 | `u8` | number of MLP layers `L` (1..=[`MAX_LAYERS`]) |
//! | 30 | `u16` | reserved, 0 |
//! | 32 | `u32` | pre-rank keep: how many candidates go on to the MLP |
//! | 36 | `u32` | per-creator cap in the final list (0 = no cap) |
//! | 40 | `f32` | MMR λ in `[0, 1]` (1 = relevance only) |
//! | 44 | `f32` | Platt `a` |
//! | 48 | `f32` | Platt `b`: `p = 1 / (1 + exp(-(a·logit + b)))` |
//! | 52 | `[u8; 12]` | reserved, 0 |
//!
//! ## Body
//! 1. Pre-ranker: `bias`, `w_dot`, `w_retrieval` (`f32` each), then `f` feature weights and `s` source weights.
//! 2. `L` layers, each: `inputs: u32`, `outputs: u32`, `outputs × inputs` weights (row-major), `outputs` biases.
//!    Layer 0 takes [`Model::input_dim`] inputs, layer `k` takes layer `k−1`'s outputs, the last has one output.
//!    ReLU follows every layer but the last.
//! 3. History block (flag bit 1 only; [`crate::history`]): `length: u8` (1..=64), `heads: u8`
//!    (1..=8), two zero bytes, then per head: `temperature`, 8 kind biases, 32 age biases and
//!    `length` position biases (`f32` each).
//! 4. Trailer: CRC-32 (IEEE) of everything before it as `u32`, then `b"EWME"`.
//!
//! ## The MLP input vector
//! `[dot, pre_score, retrieval, features…, source flags (0/1)…, interaction…, history…]`, where `dot` is
//! the dequantised user·item dot product, `interaction` (only when flag bit 0 is set)
//! is the dequantised element-wise product of the user and item embeddings (`d` values), and
//! `history` (only with a history block) is one attention output per head.
//!
//! Every float must be finite. Decoding never panics, and allocates only after a
//! length has been checked against the bytes that are actually there.

use alloc::vec::Vec;

use crate::digest::Digest;
use crate::format::{Envelope, FormatError, VersionWidth, check_range, f32_at, u16_at, u32_at};
use crate::history::{AGE_BUCKETS, Head, HistoryBlock, KINDS, MAX_HEADS, MAX_HISTORY};

/// Magic bytes at offset 0.
pub const MAGIC: [u8; 8] = *b"EWMODEL\0";
/// Magic bytes at the end.
pub const END_MAGIC: [u8; 4] = *b"EWME";
/// The version this code writes.
pub const VERSION: u16 = 2;
/// The oldest version this code still reads.
pub const OLDEST_SUPPORTED_VERSION: u16 = 1;
/// Header length.
pub const HEADER_LEN: usize = 64;
/// Most MLP layers.
pub const MAX_LAYERS: u8 = 16;
/// Widest MLP layer (inputs or outputs).
pub const MAX_WIDTH: u32 = 8192;

const FLAG_INTERACTION: u16 = 1;
const FLAG_HISTORY: u16 = 2;

/// The linear pre-ranker.
#[derive(Debug, Clone, PartialEq)]
pub struct PreRanker {
    /// Constant term.
    pub bias: f32,
    /// Weight of the user·item dot product.
    pub w_dot: f32,
    /// Weight of the retrieval score.
    pub w_retrieval: f32,
    /// One weight per feature.
    pub w_features: Vec<f32>,
    /// One weight per source slot (applied to the 0/1 "retrieved by" flag).
    pub w_sources: Vec<f32>,
}

/// One dense layer: `y = W x + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `outputs × inputs`, row-major.
    pub weights: Vec<f32>,
    /// `outputs` biases.
    pub bias: Vec<f32>,
}

/// Platt scaling: `p = σ(a · logit + b)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Platt {
    /// Slope.
    pub a: f32,
    /// Offset.
    pub b: f32,
}

/// Diversity re-ranking parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diversity {
    /// MMR trade-off: 1 ranks by relevance only, 0 by novelty only.
    pub mmr_lambda: f32,
    /// Most items one creator may have in the final list; 0 means no cap.
    pub creator_cap: u32,
}

/// A complete ranking plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Hash of the feature schema the model was trained on.
    pub feature_schema_hash: u64,
    /// Embedding dimension.
    pub dim: u16,
    /// Features per candidate.
    pub n_features: u16,
    /// Source slots per candidate.
    pub n_sources: u8,
    /// Whether the MLP input carries the element-wise user×item product.
    pub interaction: bool,
    /// How many candidates survive the pre-ranker.
    pub prerank_keep: u32,
    /// Pre-ranker weights.
    pub prerank: PreRanker,
    /// MLP layers, input first.
    pub mlp: Vec<Layer>,
    /// Calibration.
    pub calibration: Platt,
    /// Diversity.
    pub diversity: Diversity,
    /// Target attention over the user's recent interactions (format version 2).
    pub history: Option<HistoryBlock>,
}

/// Why bytes are not a valid model (or a model is not valid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum ModelError {
    /// The envelope or a field is wrong.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Layer widths do not chain.
    #[error("layer {layer} expects {expected} inputs but has {found}")]
    LayerShape { layer: usize, expected: usize, found: usize },
    /// The last layer does not produce a single logit.
    #[error("the last layer has {outputs} outputs; it must have 1")]
    LastLayerOutputs { outputs: usize },
    /// A vector has the wrong length.
    #[error("{what} has {found} values, expected {expected}")]
    Shape { what: &'static str, expected: usize, found: usize },
}

/// How the model format is framed: magic, version range, CRC-32 and end magic.
pub const ENVELOPE: Envelope = Envelope {
    name: "model",
    magic: &MAGIC,
    version: VERSION,
    oldest: OLDEST_SUPPORTED_VERSION,
    version_width: VersionWidth::U16,
    crc: true,
    xxh3_from: None,
    end_magic: Some(END_MAGIC),
};

/// The content address of an encoded model.
pub fn digest(encoded: &[u8]) -> Digest {
    Digest::of(encoded)
}

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ModelError> {
    Ok(check_range(ENVELOPE.name, field, value, min, max)?)
}

fn finite(what: &'static str, xs: &[f32]) -> Result<(), ModelError> {
    if xs.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(FormatError::NonFinite { format: ENVELOPE.name, what }.into())
    }
}

impl Model {
    /// Width of the MLP input vector for this model (see the module docs).
    pub fn input_dim(&self) -> usize {
        3 + usize::from(self.n_features)
            + usize::from(self.n_sources)
            + if self.interaction { usize::from(self.dim) } else { 0 }
            + self.history.as_ref().map_or(0, |h| h.heads.len())
    }

    /// The format version this model is written in: 2 with a history block, else 1.
    pub fn version(&self) -> u16 {
        if self.history.is_some() { 2 } else { 1 }
    }

    /// Checks every structural rule of the format.
    pub fn validate(&self) -> Result<(), ModelError> {
        range("dim", u64::from(self.dim), 1, u64::from(crate::bundle::MAX_DIM))?;
        range("n_features", u64::from(self.n_features), 0, u64::from(crate::bundle::MAX_FEATURES))?;
        range("n_sources", u64::from(self.n_sources), 0, u64::from(crate::bundle::MAX_SOURCES))?;
        range("n_layers", self.mlp.len() as u64, 1, u64::from(MAX_LAYERS))?;
        range("prerank_keep", u64::from(self.prerank_keep), 1, u64::from(crate::bundle::MAX_ROWS))?;
        let lambda = self.diversity.mmr_lambda;
        if !(0.0..=1.0).contains(&lambda) {
            return Err(FormatError::OutOfRange {
                format: ENVELOPE.name,
                field: "mmr_lambda",
                value: lambda.to_bits().into(),
                min: 0,
                max: 1,
            }
            .into());
        }
        let p = &self.prerank;
        finite("pre-ranker", &[p.bias, p.w_dot, p.w_retrieval])?;
        finite("pre-ranker feature weights", &p.w_features)?;
        finite("pre-ranker source weights", &p.w_sources)?;
        finite("calibration", &[self.calibration.a, self.calibration.b])?;
        if p.w_features.len() != usize::from(self.n_features) {
            return Err(ModelError::Shape {
                what: "pre-ranker feature weights",
                expected: self.n_features.into(),
                found: p.w_features.len(),
            });
        }
        if p.w_sources.len() != usize::from(self.n_sources) {
            return Err(ModelError::Shape {
                what: "pre-ranker source weights",
                expected: self.n_sources.into(),
                found: p.w_sources.len(),
            });
        }
        if let Some(h) = &self.history {
            range("history length", u64::from(h.length), 1, MAX_HISTORY as u64)?;
            range("history heads", h.heads.len() as u64, 1, MAX_HEADS as u64)?;
            for head in &h.heads {
                finite("history head", &[head.temperature])?;
                finite("history kind biases", &head.kind_bias)?;
                finite("history age biases", &head.age_bias)?;
                finite("history position biases", &head.position_bias)?;
                if head.position_bias.len() != usize::from(h.length) {
                    return Err(ModelError::Shape {
                        what: "history position biases",
                        expected: h.length.into(),
                        found: head.position_bias.len(),
                    });
                }
            }
        }
        let mut expected = self.input_dim();
        for (k, l) in self.mlp.iter().enumerate() {
            range("layer width", l.inputs as u64, 1, u64::from(MAX_WIDTH))?;
            range("layer width", l.outputs as u64, 1, u64::from(MAX_WIDTH))?;
            if l.inputs != expected {
                return Err(ModelError::LayerShape { layer: k, expected, found: l.inputs });
            }
            if l.weights.len() != l.inputs * l.outputs {
                return Err(ModelError::Shape {
                    what: "layer weights",
                    expected: l.inputs * l.outputs,
                    found: l.weights.len(),
                });
            }
            if l.bias.len() != l.outputs {
                return Err(ModelError::Shape { what: "layer bias", expected: l.outputs, found: l.bias.len() });
            }
            finite("layer weights", &l.weights)?;
            finite("layer bias", &l.bias)?;
            expected = l.outputs;
        }
        if expected != 1 {
            return Err(ModelError::LastLayerOutputs { outputs: expected });
        }
        Ok(())
    }

    /// Encodes the model. Fails only if the model does not [`validate`](Self::validate).
    pub fn encode(&self) -> Result<Vec<u8>, ModelError> {
        self.validate()?;
        let mut out = Vec::new();
        let envelope = ENVELOPE.writing(self.version());
        let start = envelope.write_head(&mut out);
        let flags =
            if self.interaction { FLAG_INTERACTION } else { 0 } | if self.history.is_some() { FLAG_HISTORY } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out.extend_from_slice(&self.feature_schema_hash.to_le_bytes());
        out.extend_from_slice(&self.dim.to_le_bytes());
        out.extend_from_slice(&self.n_features.to_le_bytes());
        out.push(self.n_sources);
        out.push(self.mlp.len() as u8);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.prerank_keep.to_le_bytes());
        out.extend_from_slice(&self.diversity.creator_cap.to_le_bytes());
        out.extend_from_slice(&self.diversity.mmr_lambda.to_le_bytes());
        out.extend_from_slice(&self.calibration.a.to_le_bytes());
        out.extend_from_slice(&self.calibration.b.to_le_bytes());
        out.resize(HEADER_LEN, 0);
        let mut put = |xs: &[f32]| xs.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        put(&[self.prerank.bias, self.prerank.w_dot, self.prerank.w_retrieval]);
        put(&self.prerank.w_features);
        put(&self.prerank.w_sources);
        for l in &self.mlp {
            out.extend_from_slice(&(l.inputs as u32).to_le_bytes());
            out.extend_from_slice(&(l.outputs as u32).to_le_bytes());
            l.weights.iter().chain(&l.bias).for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        if let Some(h) = &self.history {
            out.extend_from_slice(&[h.length, h.heads.len() as u8, 0, 0]);
            for head in &h.heads {
                let values = core::iter::once(&head.temperature)
                    .chain(&head.kind_bias)
                    .chain(&head.age_bias)
                    .chain(&head.position_bias);
                values.for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
        }
        envelope.write_trailer(&mut out, start);
        Ok(out)
    }

    /// Decodes and validates a model. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ModelError> {
        let format = ENVELOPE.name;
        ENVELOPE.check_len(bytes, HEADER_LEN + ENVELOPE.trailer_len())?;
        let version = ENVELOPE.check_head(bytes)?;
        let u16_at = |at: usize| u16_at(bytes, at);
        let u32_at = |at: usize| u32_at(bytes, at);
        let flags = u16_at(10);
        let known = if version >= 2 { FLAG_INTERACTION | FLAG_HISTORY } else { FLAG_INTERACTION };
        if flags & !known != 0 {
            return Err(FormatError::UnknownFlags { format, flags }.into());
        }
        if version >= 2 && flags & FLAG_HISTORY == 0 {
            return Err(ENVELOPE
                .malformed("a version-2 model without a history block (it is written as version 1)")
                .into());
        }
        let header_len = u32_at(12);
        if header_len as usize != HEADER_LEN {
            return Err(FormatError::BadHeaderLen { format, found: header_len, expected: HEADER_LEN as u32 }.into());
        }
        for offset in [30usize, 31].into_iter().chain(52..HEADER_LEN) {
            if bytes[offset] != 0 {
                return Err(FormatError::ReservedNonZero { format, offset }.into());
            }
        }
        let body_end = bytes.len() - ENVELOPE.trailer_len();
        ENVELOPE.check_end_magic(bytes)?;
        ENVELOPE.check_checksum(bytes)?;
        let mut fsh = [0u8; 8];
        fsh.copy_from_slice(&bytes[16..24]);
        let dim = u16_at(24);
        let n_features = u16_at(26);
        let n_sources = bytes[28];
        let n_layers = bytes[29];
        range("dim", u64::from(dim), 1, u64::from(crate::bundle::MAX_DIM))?;
        range("n_features", u64::from(n_features), 0, u64::from(crate::bundle::MAX_FEATURES))?;
        range("n_sources", u64::from(n_sources), 0, u64::from(crate::bundle::MAX_SOURCES))?;
        range("n_layers", u64::from(n_layers), 1, u64::from(MAX_LAYERS))?;
        let f32_at = |at: usize| f32_at(bytes, at);
        let mut r = ENVELOPE.reader(bytes, HEADER_LEN, body_end);
        let prerank = PreRanker {
            bias: r.f32("pre-ranker")?,
            w_dot: r.f32("pre-ranker")?,
            w_retrieval: r.f32("pre-ranker")?,
            w_features: r.f32s(usize::from(n_features), "pre-ranker feature weights")?,
            w_sources: r.f32s(usize::from(n_sources), "pre-ranker source weights")?,
        };
        let mut mlp = Vec::new();
        for _ in 0..n_layers {
            let inputs = r.u32("layer shape")?;
            let outputs = r.u32("layer shape")?;
            range("layer width", u64::from(inputs), 1, u64::from(MAX_WIDTH))?;
            range("layer width", u64::from(outputs), 1, u64::from(MAX_WIDTH))?;
            let (inputs, outputs) = (inputs as usize, outputs as usize);
            let weights = r.f32s(inputs * outputs, "layer weights")?;
            let bias = r.f32s(outputs, "layer bias")?;
            mlp.push(Layer { inputs, outputs, weights, bias });
        }
        let history = if flags & FLAG_HISTORY != 0 {
            let length = r.u8("history block")?;
            let heads = r.u8("history block")?;
            if r.u16("history block")? != 0 {
                return Err(ENVELOPE.malformed("the history block's reserved bytes are not zero").into());
            }
            range("history length", u64::from(length), 1, MAX_HISTORY as u64)?;
            range("history heads", u64::from(heads), 1, MAX_HEADS as u64)?;
            let mut list = Vec::new();
            for _ in 0..heads {
                let temperature = r.f32("history head")?;
                let mut kind_bias = [0.0f32; KINDS];
                kind_bias.copy_from_slice(&r.f32s(KINDS, "history kind biases")?);
                let mut age_bias = [0.0f32; AGE_BUCKETS];
                age_bias.copy_from_slice(&r.f32s(AGE_BUCKETS, "history age biases")?);
                let position_bias = r.f32s(usize::from(length), "history position biases")?;
                list.push(Head { temperature, kind_bias, age_bias, position_bias });
            }
            Some(HistoryBlock { length, heads: list })
        } else {
            None
        };
        r.finish()?;
        let model = Model {
            feature_schema_hash: u64::from_le_bytes(fsh),
            dim,
            n_features,
            n_sources,
            interaction: flags & FLAG_INTERACTION != 0,
            prerank_keep: u32_at(32),
            prerank,
            mlp,
            calibration: Platt { a: f32_at(44), b: f32_at(48) },
            diversity: Diversity { creator_cap: u32_at(36), mmr_lambda: f32_at(40) },
            history,
        };
        model.validate()?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn tiny() -> Model {
        let mut m = Model {
            feature_schema_hash: 7,
            dim: 4,
            n_features: 2,
            n_sources: 1,
            interaction: true,
            prerank_keep: 10,
            prerank: PreRanker {
                bias: 0.1,
                w_dot: 1.0,
                w_retrieval: 0.5,
                w_features: vec![0.2, -0.2],
                w_sources: vec![0.3],
            },
            mlp: Vec::new(),
            calibration: Platt { a: 1.0, b: 0.0 },
            diversity: Diversity { mmr_lambda: 0.7, creator_cap: 2 },
            history: None,
        };
        let inp = m.input_dim();
        m.mlp.push(Layer { inputs: inp, outputs: 3, weights: vec![0.01; inp * 3], bias: vec![0.0; 3] });
        m.mlp.push(Layer { inputs: 3, outputs: 1, weights: vec![1.0, -1.0, 0.5], bias: vec![0.2] });
        m
    }

    #[test]
    fn roundtrip() {
        let m = tiny();
        let bytes = m.encode().expect("encode");
        assert_eq!(Model::decode(&bytes), Ok(m));
        assert_eq!(digest(&bytes).to_hex().len(), 64);
    }

    fn with_history() -> Model {
        let mut m = tiny();
        m.history = Some(HistoryBlock {
            length: 3,
            heads: vec![Head {
                temperature: 4.0,
                kind_bias: [0.5; KINDS],
                age_bias: [-0.1; AGE_BUCKETS],
                position_bias: vec![0.0, -0.5, -1.0],
            }],
        });
        m.mlp[0].inputs += 1;
        m.mlp[0].weights = vec![0.01; m.mlp[0].inputs * 3];
        m
    }

    #[test]
    fn a_history_block_makes_version_2_and_round_trips() {
        assert_eq!(tiny().encode().expect("encode")[8], 1, "no history block: version 1, as before");
        let m = with_history();
        assert_eq!(m.input_dim(), tiny().input_dim() + 1);
        let bytes = m.encode().expect("encode");
        assert_eq!(bytes[8], 2);
        assert_eq!(Model::decode(&bytes), Ok(m.clone()));
        let mut b = bytes.clone();
        b[10] &= !(FLAG_HISTORY as u8);
        ENVELOPE.reseal(&mut b);
        assert!(Model::decode(&b).is_err(), "the block without its flag");
        let mut v1 = tiny().encode().expect("encode");
        v1[8] = 2;
        ENVELOPE.reseal(&mut v1);
        assert!(matches!(Model::decode(&v1), Err(ModelError::Format(FormatError::Malformed { .. }))));
        let mut v1 = bytes.clone();
        v1[8] = 1;
        ENVELOPE.reseal(&mut v1);
        assert!(matches!(Model::decode(&v1), Err(ModelError::Format(FormatError::UnknownFlags { .. }))));
        let mut bad = m.clone();
        if let Some(h) = bad.history.as_mut() {
            h.heads[0].position_bias.pop();
        }
        assert!(matches!(bad.validate(), Err(ModelError::Shape { what: "history position biases", .. })));
        let mut bad = m;
        if let Some(h) = bad.history.as_mut() {
            h.heads[0].temperature = f32::INFINITY;
        }
        assert!(matches!(bad.encode(), Err(ModelError::Format(FormatError::NonFinite { .. }))));
    }

    #[test]
    fn rejects_bad_shapes() {
        let mut m = tiny();
        m.mlp[1].outputs = 2;
        m.mlp[1].weights = vec![0.0; 6];
        m.mlp[1].bias = vec![0.0; 2];
        assert_eq!(m.validate(), Err(ModelError::LastLayerOutputs { outputs: 2 }));
        let mut m = tiny();
        m.mlp[0].inputs -= 1;
        assert!(matches!(m.validate(), Err(ModelError::LayerShape { layer: 0, .. })));
        let mut m = tiny();
        m.diversity.mmr_lambda = 1.5;
        assert!(matches!(m.validate(), Err(ModelError::Format(FormatError::OutOfRange { field: "mmr_lambda", .. }))));
        let mut m = tiny();
        m.prerank.w_dot = f32::NAN;
        assert!(matches!(m.encode(), Err(ModelError::Format(FormatError::NonFinite { .. }))));
    }

    #[test]
    fn typed_decode_errors() {
        let bytes = tiny().encode().expect("encode");
        assert!(matches!(Model::decode(&bytes[..20]), Err(ModelError::Format(FormatError::TooShort { .. }))));
        let mut b = bytes.clone();
        b[8] = 3;
        assert!(matches!(Model::decode(&b), Err(ModelError::Format(FormatError::UnsupportedVersion { found: 3, .. }))));
        let mut b = bytes.clone();
        b[70] ^= 0x40;
        assert!(matches!(Model::decode(&b), Err(ModelError::Format(FormatError::ChecksumMismatch { .. }))));
    }
}
