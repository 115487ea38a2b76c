// The package's one error type, and the one check of u64 inputs.

/** Every error this package throws. `code` says what went wrong. */
export class EdgewiseError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ cause?: unknown }} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = 'EdgewiseError';
    this.code = code;
  }
}

/** The largest u64. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * `v` as a u64 BigInt: a safe integer or a BigInt in 0..=2^64-1; else an
 * `EdgewiseError` of `code` naming `what`.
 * @param {unknown} v @param {string} what @param {string} code
 * @returns {bigint}
 */
export function u64(v, what, code) {
  const big = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : null;
  if (big === null || big < 0n || big > U64_MAX) {
    throw new EdgewiseError(code, `${what} must be a u64 (a safe integer or a BigInt), not ${String(v)}`);
  }
  return big;
}
