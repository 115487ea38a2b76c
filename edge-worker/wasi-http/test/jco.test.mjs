// The component under `jco serve` (node, from npm's @bytecodealliance/jco, in
// EDGEWISE_WASI_RT/js): see lib.mjs for the environment.

import { serveJco, jcoScript, component } from './lib.mjs';
import { suite } from './suite.mjs';

suite('jco serve', () => { jcoScript(); component(); }, serveJco);
