//! Writing bundles: [`BundleBuilder`] encodes candidates (the origin's
//! rows, or rows copied from other bundles), [`union`] merges a kept
//! personal bundle with a regional one, and [`reencode`] writes a decoded
//! bundle back in its canonical form. The layout is in the parent module.

use alloc::vec::Vec;

use super::*;

/// Why a row could not be added to a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum BuildError {
    /// A slice has the wrong length for the bundle's shape.
    #[error("{what} has {found} values, the bundle expects {expected}")]
    Shape { what: &'static str, expected: usize, found: usize },
    /// A NaN or infinite input.
    #[error("non-finite value in {what}")]
    NonFinite { what: &'static str },
    /// The header asks for a shape outside the format's limits.
    #[error("{field} = {value} is out of range (allowed {min}..={max})")]
    OutOfRange { field: &'static str, value: u64, min: u64, max: u64 },
    /// More than [`MAX_ROWS`] rows.
    #[error("a bundle holds at most {max} rows")]
    TooManyRows { max: u32 },
    /// [`union`] of two bundles that disagree on a shape or the feature schema.
    #[error("the two bundles differ in {what}")]
    Mismatch { what: &'static str },
    /// A user embedding for a regional bundle, which every user may be served.
    #[error("only a personal bundle may carry a user's embedding")]
    UserInRegional,
}

/// One candidate as the origin knows it, with a float embedding.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'c> {
    /// Item id.
    pub id: u64,
    /// Float embedding, `dim` values; quantised on push.
    pub embedding: &'c [f32],
    /// Feature values, `n_features` of them.
    pub features: &'c [f32],
    /// Rank within each source slot (`n_sources` entries), [`NO_RANK`] when absent.
    pub source_ranks: &'c [u16],
    /// Creator id.
    pub creator: u32,
    /// Category id.
    pub category: u32,
    /// Regions the item may be shown in.
    pub region_mask: u32,
    /// Score from retrieval (fused source score).
    pub retrieval_score: f32,
}

/// One candidate with its embedding already quantised (e.g. copied from another bundle).
#[derive(Debug, Clone, Copy)]
pub struct QuantizedCandidate<'c> {
    /// Item id.
    pub id: u64,
    /// int8 embedding, `dim` values.
    pub embedding: &'c [i8],
    /// Its scale (finite, ≥ 0).
    pub scale: f32,
    /// Feature values.
    pub features: &'c [f32],
    /// Rank within each source slot.
    pub source_ranks: &'c [u16],
    /// Creator id.
    pub creator: u32,
    /// Category id.
    pub category: u32,
    /// Region eligibility mask.
    pub region_mask: u32,
    /// Retrieval score.
    pub retrieval_score: f32,
}

/// Encodes candidates into a bundle.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    header: BundleHeader,
    ids: Vec<u64>,
    scales: Vec<f32>,
    retrieval: Vec<f32>,
    creator: Vec<u32>,
    category: Vec<u32>,
    region_mask: Vec<u32>,
    features: Vec<f32>,
    source_ranks: Vec<u16>,
    source_mask: Vec<u8>,
    embeddings: Vec<i8>,
    user: Option<Vec<f32>>,
    scratch: Vec<i8>,
}

impl BundleBuilder {
    /// Starts a bundle with the given header (its `version` and
    /// `user_embedding` are ignored: [`PLAIN_VERSION`] is written unless
    /// [`BundleBuilder::version`] or [`BundleBuilder::user_embedding`] says
    /// otherwise).
    pub fn new(header: BundleHeader) -> Result<Self, BuildError> {
        check_shape(&header).map_err(|(field, value, min, max)| BuildError::OutOfRange { field, value, min, max })?;
        Ok(Self {
            header: BundleHeader { version: PLAIN_VERSION, user_embedding: false, ..header },
            ids: Vec::new(),
            scales: Vec::new(),
            retrieval: Vec::new(),
            creator: Vec::new(),
            category: Vec::new(),
            region_mask: Vec::new(),
            features: Vec::new(),
            source_ranks: Vec::new(),
            source_mask: Vec::new(),
            embeddings: Vec::new(),
            user: None,
            scratch: alloc::vec![0; usize::from(header.dim)],
        })
    }

    /// Number of rows pushed so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no row has been pushed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds a candidate, quantising its embedding to int8 with one scale.
    pub fn push(&mut self, c: &Candidate<'_>) -> Result<(), BuildError> {
        let d = usize::from(self.header.dim);
        shape("embedding", d, c.embedding.len())?;
        if c.embedding.iter().any(|x| !x.is_finite()) {
            return Err(BuildError::NonFinite { what: "embedding" });
        }
        let mut q = core::mem::take(&mut self.scratch);
        let scale = math::quantize_into(c.embedding, &mut q);
        let r = self.push_quantized(&QuantizedCandidate {
            id: c.id,
            embedding: &q,
            scale,
            features: c.features,
            source_ranks: c.source_ranks,
            creator: c.creator,
            category: c.category,
            region_mask: c.region_mask,
            retrieval_score: c.retrieval_score,
        });
        self.scratch = q;
        r
    }

    /// Adds a candidate whose embedding is already quantised.
    pub fn push_quantized(&mut self, c: &QuantizedCandidate<'_>) -> Result<(), BuildError> {
        if self.ids.len() >= MAX_ROWS as usize {
            return Err(BuildError::TooManyRows { max: MAX_ROWS });
        }
        shape("embedding", usize::from(self.header.dim), c.embedding.len())?;
        shape("features", usize::from(self.header.n_features), c.features.len())?;
        shape("source_ranks", usize::from(self.header.n_sources), c.source_ranks.len())?;
        if !c.scale.is_finite() || c.scale < 0.0 {
            return Err(BuildError::NonFinite { what: "embedding scale" });
        }
        if c.features.iter().any(|x| !x.is_finite()) {
            return Err(BuildError::NonFinite { what: "features" });
        }
        if !c.retrieval_score.is_finite() {
            return Err(BuildError::NonFinite { what: "retrieval_score" });
        }
        let mut mask = 0u8;
        for (j, &r) in c.source_ranks.iter().enumerate() {
            if r != NO_RANK {
                mask |= 1 << j;
            }
        }
        self.ids.push(c.id);
        self.scales.push(c.scale);
        self.retrieval.push(c.retrieval_score);
        self.creator.push(c.creator);
        self.category.push(c.category);
        self.region_mask.push(c.region_mask);
        self.features.extend_from_slice(c.features);
        self.source_ranks.extend_from_slice(c.source_ranks);
        self.source_mask.push(mask);
        self.embeddings.extend_from_slice(c.embedding);
        Ok(())
    }

    /// Writes format `version` instead of [`PLAIN_VERSION`] for a bundle
    /// without a user embedding: [`OLDEST_SUPPORTED_VERSION`]..=[`PLAIN_VERSION`]
    /// (version 3 is what [`BundleBuilder::user_embedding`] writes).
    pub fn version(mut self, version: u16) -> Result<Self, BuildError> {
        check_range("version", u64::from(version), u64::from(OLDEST_SUPPORTED_VERSION), u64::from(PLAIN_VERSION))
            .map_err(|(field, value, min, max)| BuildError::OutOfRange { field, value, min, max })?;
        self.header.version = version;
        Ok(self)
    }

    /// Adds the embedding of the user this personal bundle is built for
    /// (`dim` finite values): the bundle is written as version 3.
    pub fn user_embedding(&mut self, embedding: &[f32]) -> Result<(), BuildError> {
        if self.header.scope != Scope::Personal {
            return Err(BuildError::UserInRegional);
        }
        shape("user embedding", usize::from(self.header.dim), embedding.len())?;
        if embedding.iter().any(|x| !x.is_finite()) {
            return Err(BuildError::NonFinite { what: "user embedding" });
        }
        self.user = Some(embedding.to_vec());
        Ok(())
    }

    /// Writes the bundle.
    pub fn finish(&self) -> Vec<u8> {
        let h = &self.header;
        let n = self.ids.len() as u64;
        let user = self.user.as_deref();
        // The shape was checked in `new` and rows are capped, so this cannot overflow.
        let cols = layout_u64(n, u64::from(h.dim), u64::from(h.n_features), u64::from(h.n_sources), user.is_some())
            .unwrap_or([(0, 0); 11]);
        let total = total_len_u64(&cols).unwrap_or(0) as usize;
        let mut out = Vec::with_capacity(total);
        let envelope = ENVELOPE.writing(if user.is_some() { USER_VERSION } else { h.version });
        let start = envelope.write_head(&mut out);
        let mut flags = if h.scope == Scope::Personal { FLAG_PERSONAL } else { 0 };
        if user.is_some() {
            flags |= FLAG_USER;
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&h.dim.to_le_bytes());
        out.extend_from_slice(&h.n_features.to_le_bytes());
        out.push(h.n_sources);
        out.push(Region::to_wire(h.region));
        out.extend_from_slice(&[0, 0]);
        out.push(h.sources_contributed);
        out.push(h.sources_timed_out);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&h.created_at_ms.to_le_bytes());
        out.extend_from_slice(&h.feature_schema_hash.to_le_bytes());
        out.extend_from_slice(&Digest::to_wire(h.model_digest));
        out.resize(HEADER_LEN, 0);
        let pad = |out: &mut Vec<u8>, to: u64| out.resize(to as usize, 0);
        pad(&mut out, cols[0].0);
        self.ids.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        pad(&mut out, cols[1].0);
        self.scales.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        pad(&mut out, cols[2].0);
        self.retrieval.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        pad(&mut out, cols[3].0);
        self.creator.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        pad(&mut out, cols[4].0);
        self.category.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        pad(&mut out, cols[5].0);
        self.region_mask.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        pad(&mut out, cols[6].0);
        self.features.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        pad(&mut out, cols[7].0);
        self.source_ranks.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        pad(&mut out, cols[8].0);
        out.extend_from_slice(&self.source_mask);
        pad(&mut out, cols[9].0);
        out.extend_from_slice(bytemuck::cast_slice(&self.embeddings));
        if let Some(user) = user {
            pad(&mut out, cols[10].0);
            user.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        pad(&mut out, (total - TRAILER_LEN) as u64);
        envelope.write_trailer(&mut out, start);
        out
    }
}

fn shape(what: &'static str, expected: usize, found: usize) -> Result<(), BuildError> {
    if expected == found { Ok(()) } else { Err(BuildError::Shape { what, expected, found }) }
}

/// The local candidate set of a speculative ranking: `first`'s rows (a
/// user's kept personal bundle), then those of `second` (the regional
/// bundle) whose id `first` does not hold, as one personal bundle created at
/// `created_at_ms`, carrying `first`'s user embedding if it has one. The
/// two must agree on the dimension, the feature and source counts and the
/// feature-schema hash; the header keeps a region and a model digest only
/// where both name the same one, and ORs the source masks. At most
/// [`MAX_ROWS`] rows: `second`'s last rows go first.
pub fn union(first: &Bundle<'_>, second: &Bundle<'_>, created_at_ms: u64) -> Result<Vec<u8>, BuildError> {
    let (a, b) = (first.header(), second.header());
    let same = |what, x: u64, y: u64| if x == y { Ok(()) } else { Err(BuildError::Mismatch { what }) };
    same("embedding dimension", a.dim.into(), b.dim.into())?;
    same("feature count", a.n_features.into(), b.n_features.into())?;
    same("source count", a.n_sources.into(), b.n_sources.into())?;
    same("feature schema", a.feature_schema_hash, b.feature_schema_hash)?;
    let header = BundleHeader {
        version: PLAIN_VERSION,
        scope: Scope::Personal,
        region: if a.region == b.region { a.region } else { None },
        sources_contributed: a.sources_contributed | b.sources_contributed,
        sources_timed_out: a.sources_timed_out | b.sources_timed_out,
        created_at_ms,
        model_digest: if a.model_digest == b.model_digest { a.model_digest } else { None },
        ..*a
    };
    let mut out = BundleBuilder::new(header)?;
    if let Some(user) = first.user_embedding() {
        out.user_embedding(&user.collect::<Vec<f32>>())?;
    }
    let mut ids: Vec<u64> = (0..first.len()).map(|i| first.id(i)).collect();
    ids.sort_unstable();
    let (mut features, mut ranks) = (Vec::new(), Vec::new());
    for i in 0..first.len() {
        out.push_quantized(&first.row(i, &mut features, &mut ranks))?;
    }
    for i in 0..second.len() {
        if out.len() >= MAX_ROWS as usize {
            break;
        }
        if ids.binary_search(&second.id(i)).is_err() {
            out.push_quantized(&second.row(i, &mut features, &mut ranks))?;
        }
    }
    Ok(out.finish())
}

/// Re-encodes a decoded bundle in its own version; the result is
/// byte-identical to a canonical encoding.
pub fn reencode(b: &Bundle<'_>) -> Vec<u8> {
    let h = b.header();
    let built = BundleBuilder::new(*h).and_then(|mut x| match b.user_embedding() {
        Some(user) => x.user_embedding(&user.collect::<Vec<f32>>()).map(|()| x),
        None => x.version(h.version),
    });
    let mut builder = match built {
        Ok(x) => x,
        // A decoded header always has a valid shape and a version this build reads.
        Err(_) => return Vec::new(),
    };
    let (mut f, mut r) = (Vec::new(), Vec::new());
    for i in 0..b.len() {
        let row = b.row(i, &mut f, &mut r);
        // Rows of a decoded bundle are valid by construction.
        let _ = builder.push_quantized(&row);
    }
    builder.finish()
}
