// The GPU add-on: the pre-rank scan (`dots.wgsl`, the same WGSL the native
// `GpuRanker` runs) on WebGPU. Loaded by `index.js` only once an adapter was
// found. It computes integers only (every row's int8 dot product with the
// query), which are exact on every device; the wasm core finishes from them
// (`Core.rankWithDots`), so the result is the core's, byte for byte.

import { DOTS, DOT4_PACKED, DOT4_UNPACKED } from './wgsl.js';
import { EdgewiseError } from './error.js';

/** Invocations per workgroup in `dots.wgsl`. */
const WORKGROUP = 64;
/** WebGPU's default `maxComputeWorkgroupsPerDimension`. */
const MAX_WORKGROUPS = 65535;
/** WebGPU's default `maxStorageBufferBindingSize`. */
const MAX_CHUNK_BYTES = 128 * 1024 * 1024;
/** The largest query: 4096 int8 lanes. */
const QUERY_BYTES = 4096;

/** @param {unknown} e */
const message = (e) => (e && typeof e === 'object' && 'message' in e ? String(e.message) : String(e));

/** The scan on one WebGPU device. */
export class GpuScan {
  /**
   * @param {GPUAdapter} adapter
   * @param {{ packed?: boolean }} [options] `packed: false` never uses `dot4I8Packed`.
   */
  static async create(adapter, options = {}) {
    let device;
    try {
      // WebGPU's default limits and no features: runs on every adapter.
      device = await adapter.requestDevice();
    } catch (e) {
      throw new EdgewiseError('no-gpu', `the adapter refused a device: ${message(e)}`, { cause: e });
    }
    const features = /** @type {any} */ (navigator).gpu?.wgslLanguageFeatures;
    const packed = options.packed !== false && Boolean(features?.has('packed_4x8_integer_dot_product'));
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code: (packed ? DOT4_PACKED : DOT4_UNPACKED) + DOTS });
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length > 0) {
      await device.popErrorScope();
      device.destroy();
      throw new EdgewiseError('no-gpu', `the scan shader did not compile: ${errors.map((m) => m.message).join('; ')}`);
    }
    let pipeline;
    try {
      pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'dots_main' } });
    } catch (e) {
      await device.popErrorScope();
      device.destroy();
      throw new EdgewiseError('no-gpu', `the scan pipeline failed: ${message(e)}`, { cause: e });
    }
    const query = device.createBuffer({ size: QUERY_BYTES, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const err = await device.popErrorScope();
    if (err) {
      device.destroy();
      throw new EdgewiseError('no-gpu', `WebGPU validation failed: ${err.message}`);
    }
    return new GpuScan(adapter, device, pipeline, query, packed);
  }

  /**
   * @param {GPUAdapter} adapter
   * @param {GPUDevice} device
   * @param {GPUComputePipeline} pipeline
   * @param {GPUBuffer} query
   * @param {boolean} packed
   */
  constructor(adapter, device, pipeline, query, packed) {
    this.device = device;
    this.pipeline = pipeline;
    this.query = query;
    this.packed = packed;
    const info = /** @type {any} */ (adapter).info ?? {};
    /** What the adapter says about itself. */
    this.adapter = {
      vendor: String(info.vendor ?? ''),
      architecture: String(info.architecture ?? ''),
      description: String(info.description ?? ''),
      isFallbackAdapter: Boolean(info.isFallbackAdapter ?? /** @type {any} */ (adapter).isFallbackAdapter ?? false),
      packedDot: packed,
    };
    /** Why the device was lost, once it is. @type {string | null} */
    this.lost = null;
    device.lost.then((l) => {
      this.lost = `${l.reason}: ${l.message}`;
    });
  }

  /**
   * Puts a bundle's embedding column on the device: chunks of at most
   * 128 MiB and 65535 workgroups, rows padded to whole words.
   * @param {Uint8Array} bundle
   * @param {{ rows: number, dim: number, start: number }} layout from `bundleLayout`
   */
  upload(bundle, layout) {
    this.#usable();
    const { rows: n, dim: d, start } = layout;
    const words = Math.ceil(d / 4);
    const rowBytes = words * 4;
    const perChunk = Math.max(1, Math.min(Math.floor(MAX_CHUNK_BYTES / rowBytes), MAX_WORKGROUPS * WORKGROUP));
    const usage = GPUBufferUsage;
    const size = Math.max(4 * n, 4);
    const dots = this.device.createBuffer({ size, usage: usage.STORAGE | usage.COPY_SRC });
    const readback = this.device.createBuffer({ size, usage: usage.MAP_READ | usage.COPY_DST });
    const chunks = [];
    for (let first = 0; first < n; first += perChunk) {
      const rows = Math.min(perChunk, n - first);
      const data = new Uint8Array(rows * rowBytes);
      for (let r = 0; r < rows; r++) {
        const at = bundle.byteOffset + start + (first + r) * d;
        data.set(new Uint8Array(bundle.buffer, at, d), r * rowBytes);
      }
      const rowsBuf = this.device.createBuffer({ size: data.byteLength, usage: usage.STORAGE | usage.COPY_DST });
      this.device.queue.writeBuffer(rowsBuf, 0, data);
      const params = this.device.createBuffer({ size: 16, usage: usage.UNIFORM | usage.COPY_DST });
      this.device.queue.writeBuffer(params, 0, new Uint32Array([rows, words, first, 0]));
      const bindGroup = this.device.createBindGroup({
        layout: this.pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: params } },
          { binding: 1, resource: { buffer: rowsBuf } },
          { binding: 2, resource: { buffer: this.query } },
          { binding: 3, resource: { buffer: dots } },
        ],
      });
      chunks.push({ rows, bindGroup, buffers: [rowsBuf, params] });
    }
    return { n, d, words, chunks, dots, readback };
  }

  /**
   * Frees a resident bundle's buffers.
   * @param {ReturnType<GpuScan['upload']>} resident
   */
  release(resident) {
    for (const c of resident.chunks) for (const b of c.buffers) b.destroy();
    resident.dots.destroy();
    resident.readback.destroy();
  }

  /**
   * Every row's int8 dot product with `q`: one submit, one readback.
   * @param {ReturnType<GpuScan['upload']>} resident
   * @param {Int8Array} q
   */
  async dots(resident, q) {
    this.#usable();
    if (q.length !== resident.d) {
      throw new EdgewiseError('incompatible', `a query of ${q.length} lanes for rows of ${resident.d}`);
    }
    if (resident.n === 0) return new Int32Array(0);
    const lanes = new Uint8Array(resident.words * 4);
    lanes.set(new Uint8Array(q.buffer, q.byteOffset, q.length));
    this.device.pushErrorScope('validation');
    this.device.queue.writeBuffer(this.query, 0, lanes);
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(this.pipeline);
    for (const c of resident.chunks) {
      pass.setBindGroup(0, c.bindGroup);
      pass.dispatchWorkgroups(Math.ceil(c.rows / WORKGROUP));
    }
    pass.end();
    encoder.copyBufferToBuffer(resident.dots, 0, resident.readback, 0, resident.n * 4);
    this.device.queue.submit([encoder.finish()]);
    const err = await this.device.popErrorScope();
    if (err) throw new EdgewiseError('gpu', `WebGPU validation failed: ${err.message}`);
    try {
      await resident.readback.mapAsync(GPUMapMode.READ, 0, resident.n * 4);
    } catch (e) {
      this.#usable();
      throw new EdgewiseError('gpu', `reading the dot products back failed: ${message(e)}`, { cause: e });
    }
    const out = new Int32Array(resident.readback.getMappedRange(0, resident.n * 4).slice(0));
    resident.readback.unmap();
    return out;
  }

  #usable() {
    if (this.lost !== null) throw new EdgewiseError('gpu-lost', `the GPU device was lost (${this.lost})`);
  }

  /** Gives the device up (also how tests lose it on purpose). */
  destroy() {
    this.device.destroy();
  }
}
