// The package's one error type.

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
