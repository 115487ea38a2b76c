//! [`GpuRanker`]: the pre-rank scan on a GPU through wgpu, the rest of the
//! pipeline on the CPU core, with a result byte-identical to the core's.
//!
//! # What runs where
//! The data-hungry step of a ranking is the pre-rank scan: one int8 dot
//! product of the query with every row, `n × d` multiply-adds over the whole
//! embedding column. The GPU does it ([`crate::DOTS`]), exactly: integer
//! products and sums are exact on every device, whatever the driver's f32
//! habits (WGSL lets an implementation fuse and reassociate float arithmetic;
//! no float is computed on the GPU). The core then finishes from those dot
//! products with [`Ranker::rank_with_dots`]: every pre-rank score (the `EWRS`
//! row table carries all of them), the cut, the MLP, calibration, MMR and the
//! top k, the same f32 operations in the same order as [`Ranker::rank`]. So
//! the `EWRS` bytes are the core's, bit for bit; the conformance tests check it.
//!
//! # Resources
//! A `GpuRanker` is created once per device: adapter, device, the one compute
//! pipeline, a query buffer and its upload buffer. [`GpuRanker::upload`] puts a
//! bundle's embedding column on the device once ([`GpuBundle`]), in chunks of
//! at most 128 MiB (WebGPU's default `maxStorageBufferBindingSize`) and 65535
//! workgroups, with its output and readback buffers and bind groups. Ranking a
//! resident bundle again (after every interaction, say) then creates nothing:
//! it writes the query (at most 4 KiB) into the upload buffer, records one
//! command buffer (copy, one dispatch per chunk, copy back), submits it once
//! and maps the readback buffer once. [`GpuRanker::created`] counts every GPU
//! object this crate creates, so a test holds steady state to zero.
//!
//! # Errors
//! Every failure is a [`GpuError`], never a panic: wgpu's default handler for
//! uncaptured errors (which panics) is replaced, creation runs inside error
//! scopes, device loss is recorded by a callback, and every wait has a
//! timeout. Input the core refuses is refused before any GPU work, with the
//! core's error. After an error the caller can always rank on the CPU: the
//! bundle is the caller's, untouched. [`crate::AnyRanker`] does that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use edgewise_core::bundle::{Bundle, MAX_DIM};
use edgewise_core::model::Model;
use edgewise_core::rank::{RankContext, RankError, RankOutput, Ranker};

/// Invocations per workgroup in [`crate::DOTS`] (`@workgroup_size(64)`).
const WORKGROUP: u32 = 64;
/// The most workgroups one dispatch may have in x under WebGPU's default
/// limits (`maxComputeWorkgroupsPerDimension`).
const MAX_WORKGROUPS: u32 = 65_535;
/// WebGPU's default `maxStorageBufferBindingSize`: the largest chunk.
pub const MAX_CHUNK_BYTES: u64 = 128 << 20;
/// The largest query, in bytes: [`MAX_DIM`] int8 lanes.
const QUERY_BYTES: u64 = MAX_DIM as u64;

/// Whether to use `dot4I8Packed` where the `packed_4x8_integer_dot_product`
/// WGSL language feature is present. Both ways are exact; this exists so each
/// can be tested and measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackedDot {
    /// Use it when the instance offers it.
    #[default]
    Auto,
    /// Never: unpack the four lanes with `extractBits`.
    Off,
}

/// How to find and drive a GPU.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// The backends to look for an adapter on. `None`: the `WGPU_BACKEND`
    /// environment variable if it is set (`vulkan`, `metal`, `dx12`, `gl`),
    /// else every backend this build has. `Some(Backends::empty())` finds no
    /// adapter: the way to force the CPU fallback through configuration.
    pub backends: Option<wgpu::Backends>,
    /// Which adapter to prefer when there are several.
    pub power_preference: wgpu::PowerPreference,
    /// The packed dot-product fast path.
    pub packed_dot: PackedDot,
    /// The largest GPU buffer one chunk of the embedding column takes; at most
    /// [`MAX_CHUNK_BYTES`] (and the device's own limits), at least 4 KiB.
    /// Smaller values exist to test chunking on small bundles.
    pub max_chunk_bytes: u64,
    /// How long to wait for the GPU before giving up on a call.
    pub timeout: Duration,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backends: None,
            power_preference: wgpu::PowerPreference::HighPerformance,
            packed_dot: PackedDot::Auto,
            max_chunk_bytes: MAX_CHUNK_BYTES,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why the GPU path could not run. The CPU core can always take over.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No adapter on the backends asked for.
    #[error("no GPU adapter on backends {backends}: {reason}")]
    NoAdapter {
        /// The backends searched.
        backends: String,
        /// What wgpu said.
        reason: String,
    },
    /// The adapter would not give a device with WebGPU's default limits.
    #[error("the adapter {adapter:?} refused a device: {reason}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// What wgpu said.
        reason: String,
    },
    /// The device was lost (driver reset, GPU removed, destroyed).
    #[error("the GPU device was lost ({reason}): {message}")]
    DeviceLost {
        /// wgpu's reason.
        reason: String,
        /// The driver's message.
        message: String,
    },
    /// The device ran out of memory.
    #[error("out of GPU memory while {what}")]
    OutOfMemory {
        /// What was being created.
        what: &'static str,
    },
    /// The WGSL did not compile on this device.
    #[error("the shader did not compile: {0}")]
    Shader(String),
    /// wgpu reported a validation error (a bug here, or a driver's).
    #[error("GPU validation error while {what}: {message}")]
    Validation {
        /// What was being done.
        what: &'static str,
        /// What wgpu said.
        message: String,
    },
    /// The core refused the model, bundle or context (the CPU path refuses
    /// them too, with this error).
    #[error(transparent)]
    Refused(#[from] RankError),
    /// A buffer would exceed the device's limits.
    #[error("{what} needs {needed} bytes, the device allows {limit}")]
    TooLarge {
        /// Which buffer.
        what: &'static str,
        /// Its size.
        needed: u64,
        /// The device's limit.
        limit: u64,
    },
    /// Mapping a buffer for reading or writing failed.
    #[error("mapping the {what} buffer failed: {message}")]
    Map {
        /// Which buffer.
        what: &'static str,
        /// What wgpu said.
        message: String,
    },
    /// The GPU did not finish in time. The ranker is not used again.
    #[error("the GPU did not finish within {0:?}")]
    Timeout(Duration),
    /// The bundle was uploaded through another [`GpuRanker`] (another device).
    #[error("the bundle was uploaded to another GpuRanker")]
    ForeignBundle,
    /// An earlier failure left this ranker unusable; the message says which.
    #[error("the GPU ranker is unusable after an earlier failure: {0}")]
    Unusable(String),
    /// The options are out of range.
    #[error("bad GPU options: {0}")]
    Options(String),
}

/// GPU objects created through a [`GpuRanker`], by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Created {
    /// Buffers.
    pub buffers: u64,
    /// Bind groups.
    pub bind_groups: u64,
    /// Compute pipelines.
    pub pipelines: u64,
    /// Shader modules.
    pub shader_modules: u64,
}

/// A description of the adapter in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `NVIDIA H100 …`).
    pub name: String,
    /// The backend (`Vulkan`, `Metal`, …).
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `Cpu` (an emulation such as lavapipe), ….
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// Whether the packed dot-product path is in use.
    pub packed_dot: bool,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {}, driver {}; {} dot products)",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            if self.packed_dot { "dot4I8Packed" } else { "unpacked" }
        )
    }
}

/// The state wgpu's callbacks report into.
#[derive(Debug, Default)]
struct Signals {
    lost: Option<(String, String)>,
    uncaptured: Option<String>,
}

/// Locks a mutex whose holder may have panicked (the data is a plain record).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The pre-rank scan on a GPU, finished by the CPU core. See the module docs.
#[derive(Debug)]
pub struct GpuRanker {
    id: u64,
    device: wgpu::Device,
    queue: wgpu::Queue,
    summary: AdapterSummary,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// The query, packed four lanes per word (STORAGE | COPY_DST).
    query: wgpu::Buffer,
    /// Host-visible staging for the query (MAP_WRITE | COPY_SRC), mapped
    /// between calls.
    upload: wgpu::Buffer,
    signals: Arc<Mutex<Signals>>,
    created: Created,
    broken: Option<String>,
    max_chunk_bytes: u64,
    timeout: Duration,
    ranker: Ranker,
    words: Vec<u32>,
}

/// A bundle whose embedding column is resident on a [`GpuRanker`]'s device.
/// It borrows the bundle's bytes, so they cannot change while it lives.
#[derive(Debug)]
pub struct GpuBundle<'a> {
    bundle: Bundle<'a>,
    owner: u64,
    chunks: Vec<Chunk>,
    /// One i32 per row (STORAGE | COPY_SRC).
    dots: wgpu::Buffer,
    /// Where the dot products are read back (MAP_READ | COPY_DST).
    readback: wgpu::Buffer,
}

#[derive(Debug)]
struct Chunk {
    rows: u32,
    bind_group: wgpu::BindGroup,
    _rows: wgpu::Buffer,
    _params: wgpu::Buffer,
}

impl GpuBundle<'_> {
    /// The bundle.
    pub fn bundle(&self) -> &Bundle<'_> {
        &self.bundle
    }

    /// How many chunks the embedding column was split into.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }
}

/// Packs int8 lanes four to a little-endian word, the last word zero-padded.
fn pack(q: &[i8], words: &mut Vec<u32>) {
    words.clear();
    words.extend(q.chunks(4).map(|c| {
        let mut lanes = [0u8; 4];
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = x as u8;
        }
        u32::from_le_bytes(lanes)
    }));
}

/// An out-of-memory scope with a validation scope inside it, pushed around a
/// group of creations and popped together.
struct Scopes {
    oom: wgpu::ErrorScopeGuard,
    invalid: wgpu::ErrorScopeGuard,
}

impl Scopes {
    fn push(device: &wgpu::Device) -> Self {
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        Self { oom, invalid: device.push_error_scope(wgpu::ErrorFilter::Validation) }
    }

    /// Pops both scopes (innermost first); what they caught while `what`
    /// becomes a [`GpuError`], a validation error through `invalid`.
    fn pop_with(self, what: &'static str, invalid: impl FnOnce(String) -> GpuError) -> Result<(), GpuError> {
        let caught = pollster::block_on(self.invalid.pop());
        if pollster::block_on(self.oom.pop()).is_some() {
            return Err(GpuError::OutOfMemory { what });
        }
        caught.map_or(Ok(()), |e| Err(invalid(e.to_string())))
    }

    /// [`pop_with`](Self::pop_with), a validation error as [`GpuError::Validation`].
    fn pop(self, what: &'static str) -> Result<(), GpuError> {
        self.pop_with(what, |message| GpuError::Validation { what, message })
    }
}

/// A buffer of `size` bytes written by `fill` while mapped at creation, then
/// unmapped; counted in `created`.
fn buffer_init(
    device: &wgpu::Device,
    created: &mut Created,
    label: &'static str,
    usage: wgpu::BufferUsages,
    size: u64,
    fill: impl FnOnce(&mut wgpu::BufferViewMut),
) -> Result<wgpu::Buffer, GpuError> {
    let buffer =
        device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: true });
    created.buffers += 1;
    match buffer.slice(..).get_mapped_range_mut() {
        Ok(mut view) => fill(&mut view),
        Err(e) => return Err(GpuError::Map { what: label, message: e.to_string() }),
    }
    buffer.unmap();
    Ok(buffer)
}

/// A buffer for the GPU's own use; counted in `created`.
fn buffer(
    device: &wgpu::Device,
    created: &mut Created,
    label: &'static str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    created.buffers += 1;
    device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
}

impl GpuRanker {
    /// Finds an adapter, opens a device with WebGPU's default limits (no
    /// extra limits or features are asked for) and builds the pipeline.
    pub fn new(options: &GpuOptions) -> Result<Self, GpuError> {
        if !(4096..=MAX_CHUNK_BYTES).contains(&options.max_chunk_bytes) {
            return Err(GpuError::Options(format!(
                "max_chunk_bytes is {}, it must be in 4096..={MAX_CHUNK_BYTES}",
                options.max_chunk_bytes
            )));
        }
        if options.timeout.is_zero() {
            return Err(GpuError::Options("the timeout must be positive".into()));
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(b) = options.backends {
            desc.backends = b;
        }
        let backends = desc.backends;
        if backends.is_empty() {
            return Err(GpuError::NoAdapter { backends: "(none)".into(), reason: "no backend was enabled".into() });
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: options.power_preference,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        }))
        .map_err(|e| GpuError::NoAdapter { backends: format!("{backends:?}"), reason: e.to_string() })?;
        let info = adapter.get_info();
        let packed = options.packed_dot == PackedDot::Auto
            && instance.wgsl_language_features().contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("edgewise"),
            required_features: wgpu::Features::empty(),
            required_limits: wgpu::Limits::default(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::RequestDevice { adapter: info.name.clone(), reason: e.to_string() })?;

        let signals = Arc::new(Mutex::new(Signals::default()));
        let s = Arc::clone(&signals);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&s).uncaptured.get_or_insert_with(|| e.to_string());
        }));
        let s = Arc::clone(&signals);
        device.set_device_lost_callback(move |reason, message| {
            lock(&s).lost = Some((format!("{reason:?}"), message));
        });

        let limits = device.limits();
        let max_chunk_bytes =
            options.max_chunk_bytes.min(limits.max_storage_buffer_binding_size).min(limits.max_buffer_size) / 4 * 4;
        let summary = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            packed_dot: packed,
        };
        let mut created = Created::default();

        let scopes = Scopes::push(&device);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("edgewise dots"),
            source: wgpu::ShaderSource::Wgsl(crate::dots_shader(packed).into()),
        });
        created.shader_modules += 1;
        scopes.pop_with("compiling the shader", GpuError::Shader)?;
        let scopes = Scopes::push(&device);
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        };
        let buffer_binding = |ty| wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None };
        let storage = |read_only| buffer_binding(wgpu::BufferBindingType::Storage { read_only });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("edgewise dots"),
            entries: &[
                entry(0, buffer_binding(wgpu::BufferBindingType::Uniform)),
                entry(1, storage(true)),
                entry(2, storage(true)),
                entry(3, storage(false)),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("edgewise dots"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("edgewise dots"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("dots_main"),
            compilation_options: Default::default(),
            cache: None,
        });
        created.pipelines += 1;
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let query = buffer(&device, &mut created, "edgewise query", QUERY_BYTES, usage);
        // Mapped at creation and left mapped: each ranking writes the query
        // into it, unmaps it for the copy, and maps it again.
        let upload = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("edgewise query upload"),
            size: QUERY_BYTES,
            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        created.buffers += 1;
        scopes.pop_with("building the pipeline", GpuError::Shader)?;

        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            device,
            queue,
            summary,
            pipeline,
            layout,
            query,
            upload,
            signals,
            created,
            broken: None,
            max_chunk_bytes,
            timeout: options.timeout,
            ranker: Ranker::new(),
            words: Vec::new(),
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.summary
    }

    /// Every GPU object this ranker has created so far.
    pub fn created(&self) -> Created {
        self.created
    }

    /// wgpu's own count of live GPU objects on this device.
    pub fn live_counters(&self) -> wgpu::InternalCounters {
        self.device.get_internal_counters()
    }

    /// The largest chunk of the embedding column, in bytes.
    pub fn max_chunk_bytes(&self) -> u64 {
        self.max_chunk_bytes
    }

    /// Gives the device up now, freeing its memory. Every later call returns
    /// [`GpuError::DeviceLost`], as after a driver reset: this is also how the
    /// tests lose a device on purpose.
    pub fn destroy(&mut self) {
        self.device.destroy();
        lock(&self.signals).lost.get_or_insert_with(|| ("Destroyed".into(), "GpuRanker::destroy was called".into()));
    }

    /// Fails if the device was lost or an earlier call left the ranker unusable.
    fn check_usable(&mut self) -> Result<(), GpuError> {
        if let Some(why) = &self.broken {
            return Err(GpuError::Unusable(why.clone()));
        }
        let mut s = lock(&self.signals);
        if let Some((reason, message)) = s.lost.clone() {
            drop(s);
            let e = GpuError::DeviceLost { reason, message };
            self.broken = Some(e.to_string());
            return Err(e);
        }
        if let Some(message) = s.uncaptured.take() {
            drop(s);
            let e = GpuError::Validation { what: "an earlier call", message };
            self.broken = Some(e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// Fails unless `bundle` was uploaded here and the ranker is usable.
    fn check_bundle(&mut self, bundle: &GpuBundle<'_>) -> Result<(), GpuError> {
        if bundle.owner != self.id {
            return Err(GpuError::ForeignBundle);
        }
        self.check_usable()
    }

    /// Marks the ranker unusable with `e` and returns it.
    fn fail(&mut self, e: GpuError) -> GpuError {
        self.broken.get_or_insert_with(|| e.to_string());
        e
    }

    /// Puts `bundle`'s embedding column on the device, with the buffers and
    /// bind groups its rankings will use.
    pub fn upload<'a>(&mut self, bundle: Bundle<'a>) -> Result<GpuBundle<'a>, GpuError> {
        self.check_usable()?;
        let n = bundle.len();
        let d = bundle.dim();
        let words = d.div_ceil(4);
        let row_bytes = words as u64 * 4;
        let rows_per_chunk = (self.max_chunk_bytes / row_bytes).min(u64::from(MAX_WORKGROUPS * WORKGROUP)).max(1);
        let dots_bytes = (n as u64 * 4).max(4);
        let limits = self.device.limits();
        let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        if dots_bytes > limit {
            return Err(GpuError::TooLarge { what: "the dot products", needed: dots_bytes, limit });
        }
        let scopes = Scopes::push(&self.device);
        let (device, created) = (&self.device, &mut self.created);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let dots = buffer(device, created, "edgewise dots", dots_bytes, usage);
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let readback = buffer(device, created, "edgewise dots readback", dots_bytes, usage);
        let column = &bundle.as_bytes()[bundle.layout().embeddings.0..bundle.layout().embeddings.1];
        let (layout, query) = (&self.layout, &self.query);
        let mut chunk = |first: u64| -> Result<Chunk, GpuError> {
            let rows = rows_per_chunk.min(n as u64 - first);
            let src = &column[first as usize * d..(first + rows) as usize * d];
            let usage = wgpu::BufferUsages::STORAGE;
            let rows_buf = buffer_init(device, created, "embeddings", usage, rows * row_bytes, |view| {
                if d.is_multiple_of(4) {
                    view.copy_from_slice(src);
                } else {
                    // Pad every row to whole words: WebGPU zeroes a buffer
                    // mapped at creation, so only the lanes are written.
                    let stride = row_bytes as usize;
                    for (r, row) in src.chunks_exact(d).enumerate() {
                        view.slice(r * stride..r * stride + d).copy_from_slice(row);
                    }
                }
            })?;
            let p: [u32; 4] = [rows as u32, words as u32, first as u32, 0];
            let params = buffer_init(device, created, "params", wgpu::BufferUsages::UNIFORM, 16, |view| {
                view.copy_from_slice(bytemuck::cast_slice(&p));
            })?;
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("edgewise dots"),
                layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: params.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: rows_buf.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 2, resource: query.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 3, resource: dots.as_entire_binding() },
                ],
            });
            created.bind_groups += 1;
            Ok(Chunk { rows: rows as u32, bind_group, _rows: rows_buf, _params: params })
        };
        let chunks: Result<Vec<Chunk>, GpuError> =
            (0..n as u64).step_by(rows_per_chunk as usize).map(&mut chunk).collect();
        // The scopes are popped either way; a creation error comes first.
        let popped = scopes.pop("uploading a bundle");
        let chunks = chunks?;
        popped?;
        Ok(GpuBundle { bundle, owner: self.id, chunks, dots, readback })
    }

    /// Ranks a resident bundle for `ctx` with `model`, writing into `out`:
    /// the dot products on the GPU (one submit, one readback), the rest on the
    /// CPU core. `out` is then exactly what [`Ranker::rank`] gives.
    pub fn rank(
        &mut self,
        model: &Model,
        bundle: &GpuBundle<'_>,
        ctx: &RankContext,
        out: &mut RankOutput,
    ) -> Result<(), GpuError> {
        self.check_bundle(bundle)?;
        let b = &bundle.bundle;
        let (q, _) = self.ranker.quantized_query(model, b, ctx)?;
        pack(q, &mut self.words);
        let mut ranker = std::mem::take(&mut self.ranker);
        let ranked = self.scan(bundle, |dots| ranker.rank_with_dots(model, b, ctx, dots, out));
        self.ranker = ranker;
        Ok(ranked??)
    }

    /// The pre-rank scan alone: `out[i]` becomes the int8 dot product of
    /// `query` and row `i` of the resident bundle, computed on the GPU (what
    /// [`rank`](Self::rank) runs before the core finishes).
    pub fn dot_products(&mut self, bundle: &GpuBundle<'_>, query: &[i8], out: &mut Vec<i32>) -> Result<(), GpuError> {
        self.check_bundle(bundle)?;
        let d = bundle.bundle.dim();
        if query.len() != d {
            return Err(RankError::QueryDimension { what: "query", expected: d, found: query.len() }.into());
        }
        pack(query, &mut self.words);
        self.scan(bundle, |dots| {
            out.clear();
            out.extend_from_slice(dots);
        })
    }

    /// Runs the scan with the query in `self.words` and hands the dot
    /// products, read in place from the mapped readback buffer, to `f`.
    fn scan<R>(&mut self, bundle: &GpuBundle<'_>, f: impl FnOnce(&[i32]) -> R) -> Result<R, GpuError> {
        let n = bundle.bundle.len() as u64;
        if n == 0 {
            return Ok(f(&[]));
        }
        let query_bytes = self.words.len() as u64 * 4;
        match self.upload.slice(..query_bytes).get_mapped_range_mut() {
            Ok(mut view) => view.copy_from_slice(bytemuck::cast_slice(&self.words)),
            Err(e) => return Err(self.fail(GpuError::Map { what: "query upload", message: e.to_string() })),
        }
        self.upload.unmap();
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("edgewise rank") });
        encoder.copy_buffer_to_buffer(&self.upload, 0, &self.query, 0, query_bytes);
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("edgewise dots"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            for c in &bundle.chunks {
                pass.set_bind_group(0, &c.bind_group, &[]);
                pass.dispatch_workgroups(c.rows.div_ceil(WORKGROUP), 1, 1);
            }
        }
        encoder.copy_buffer_to_buffer(&bundle.dots, 0, &bundle.readback, 0, n * 4);
        self.queue.submit([encoder.finish()]);

        type MapResult = Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>>;
        let read: MapResult = Arc::default();
        let write: MapResult = Arc::default();
        let r = Arc::clone(&read);
        bundle.readback.map_async(wgpu::MapMode::Read, ..n * 4, move |res| *lock(&r) = Some(res));
        let w = Arc::clone(&write);
        self.upload.map_async(wgpu::MapMode::Write, .., move |res| *lock(&w) = Some(res));
        if let Err(e) = self.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: Some(self.timeout) }) {
            return Err(self.fail(match e {
                wgpu::PollError::Timeout => GpuError::Timeout(self.timeout),
                e => GpuError::Validation { what: "waiting for the GPU", message: e.to_string() },
            }));
        }
        self.check_usable()?;
        let mapped = |m: &MapResult, what| match lock(m).take() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(GpuError::Map { what, message: e.to_string() }),
            None => Err(GpuError::Map { what, message: "the mapping never completed".into() }),
        };
        if let Err(e) = mapped(&write, "query upload").and(mapped(&read, "dot products")) {
            return Err(self.fail(e));
        }
        let result = match bundle.readback.slice(..n * 4).get_mapped_range() {
            Ok(view) => match bytemuck::try_cast_slice::<u8, i32>(&view) {
                Ok(dots) => Ok(f(dots)),
                Err(e) => Err(GpuError::Map { what: "dot products", message: e.to_string() }),
            },
            Err(e) => Err(GpuError::Map { what: "dot products", message: e.to_string() }),
        };
        bundle.readback.unmap();
        result.map_err(|e| self.fail(e))
    }
}
