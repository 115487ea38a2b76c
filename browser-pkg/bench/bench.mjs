// `cargo xtask npm-bench`: the packed package in Debian's Chromium, ranking
// 300, 10k and 100k rows (d = 64) in wasm and on WebGPU, plus the package's
// sizes. Chromium's WebGPU here is SwiftShader, a CPU emulation of a GPU: its
// figures say what the path costs on this machine, not what a GPU does.

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { launch, serve } from './chromium.mjs';

const benchDir = process.env.EDGEWISE_BENCH_DATA;
if (!benchDir) throw new Error('EDGEWISE_BENCH_DATA must be set (cargo xtask npm-bench sets it)');
const pkgDir = dirname(fileURLToPath(import.meta.resolve('edgewise/package.json')));
const here = dirname(fileURLToPath(import.meta.url));

const server = await serve({
  pages: {
    '/': () => '<!doctype html><meta charset="utf-8"><script type="module" src="/app.js"></script>',
    '/app.js': () => readFile(join(here, 'bench-app.js')),
  },
  types: { '/app.js': 'text/javascript' },
  dirs: { '/pkg/': pkgDir, '/bench/': benchDir },
});
const browser = await launch({ webgpu: true });
let r;
try {
  const page = await browser.newPage();
  await page.goto(server.origin);
  await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 600_000 });
  r = await page.evaluate(() => window.__result);
} finally {
  await browser.close();
  await server.close();
}
if (r.error) throw new Error(r.error);
if (r.engine !== 'webgpu') throw new Error(`no WebGPU adapter (${r.lastFallback}): the bench needs --enable-unsafe-webgpu`);

const kib = (n) => (n / 1024).toFixed(1);
const size = async (f) => {
  const b = await readFile(join(pkgDir, f));
  return [b.length, gzipSync(b, { level: 9 }).length];
};
const cpuFiles = ['edgewise_core_bg.wasm', 'edgewise_core.js', 'index.js', 'error.js'];
const gpuFiles = ['gpu.js', 'wgsl.js'];
let cpu = [0, 0];
let gpu = [0, 0];
for (const f of cpuFiles) cpu = (await size(f)).map((x, i) => x + cpu[i]);
for (const f of gpuFiles) gpu = (await size(f)).map((x, i) => x + gpu[i]);

console.log(`## The npm package in Chromium ${browser.version()}\n`);
console.log(`- sizes: CPU build (wasm + JS) ${kib(cpu[0])} KiB, ${kib(cpu[1])} KiB gzipped; ` +
  `GPU add-on (gpu.js + wgsl.js, loaded only with an adapter) ${kib(gpu[0])} KiB, ${kib(gpu[1])} KiB gzipped`);
const a = r.adapter;
console.log(`- WebGPU adapter: ${a.vendor} ${a.architecture}${a.isFallbackAdapter ? ' (a fallback adapter)' : ''}; ` +
  `dot4I8Packed ${a.packedDot ? 'in use' : 'not available'}`);
if (a.isFallbackAdapter || a.architecture === 'swiftshader') {
  console.log('- **SwiftShader is a CPU emulation of a GPU**: the WebGPU column is not a GPU measurement.');
}
console.log('- d = 64, a model pre-ranking to 300, k = 50; medians, wasm and WebGPU alternating; ' +
  'the GPU column keeps the bundle resident (uploaded once, before timing)\n');
console.log('| rows | wasm ms | WebGPU ms | wasm / WebGPU |');
console.log('|---:|---:|---:|---:|');
for (const row of r.rows) {
  console.log(`| ${row.n} | ${row.wasmMs.toFixed(2)} | ${row.gpuMs.toFixed(2)} | ${(row.wasmMs / row.gpuMs).toFixed(2)} |`);
}
