// webpack 5, production mode, no plugins: the package's `new URL('…wasm',
// import.meta.url)` must be enough for webpack to emit and find the module.
import { fileURLToPath } from 'node:url';

export default {
  mode: 'production',
  entry: './src/main.js',
  output: { path: fileURLToPath(new URL('./dist', import.meta.url)), filename: 'main.js', clean: true },
  performance: { hints: false },
};
