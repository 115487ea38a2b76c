//! Hostile guest modules written in WAT: the core guest's exports, with an
//! `ew_rank` that does whatever the test needs (spin, grow memory, trap,
//! report a result region it does not own).

use edgewise_core::abi;

/// A module with the core guest's exports whose `ew_rank` runs `body`.
pub(crate) fn hostile(body: &str) -> Vec<u8> {
    hostile_reporting(body, "0", "0", "0")
}

/// Like [`hostile`], with the result region (`ew_result_ptr`, `ew_result_len`)
/// and the error length (`ew_error_len`) the guest reports, as WAT `i32` constants.
pub(crate) fn hostile_reporting(body: &str, result_ptr: &str, result_len: &str, error_len: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "ew_abi_version") (result i32) i32.const {version})
  (func (export "ew_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "ew_free") (param i32 i32))
  (func (export "ew_load_model") (param i32 i32) (result i32) i32.const 0)
  (func (export "ew_rank") (param i32 i32 i32 i32) (result i32) {body})
  (func (export "ew_result_ptr") (result i32) i32.const {result_ptr})
  (func (export "ew_result_len") (result i32) i32.const {result_len})
  (func (export "ew_error_ptr") (result i32) i32.const 0)
  (func (export "ew_error_len") (result i32) i32.const {error_len}))"#,
        version = abi::ABI_VERSION
    );
    wat::parse_str(&wat).expect("valid WAT")
}
