//! Shared test helpers: hostile guest modules written in WAT.

#![allow(dead_code, unreachable_pub)]

use edgewise_core::abi;

/// A module with the core guest's exports whose `ew_rank` runs `body`.
pub fn hostile(body: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "ew_abi_version") (result i32) i32.const {version})
  (func (export "ew_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "ew_free") (param i32 i32))
  (func (export "ew_load_model") (param i32 i32) (result i32) i32.const 0)
  (func (export "ew_rank") (param i32 i32 i32 i32) (result i32) {body})
  (func (export "ew_result_ptr") (result i32) i32.const 0)
  (func (export "ew_result_len") (result i32) i32.const 0)
  (func (export "ew_error_ptr") (result i32) i32.const 0)
  (func (export "ew_error_len") (result i32) i32.const 0))"#,
        version = abi::ABI_VERSION
    );
    wat::parse_str(&wat).expect("valid WAT")
}
