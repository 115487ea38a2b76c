//! The exports. Every function here is called by the host with `u32` offsets
//! into this module's linear memory.
#![allow(unsafe_code)]
// These are exported through `no_mangle`, not through Rust visibility.
#![allow(unreachable_pub, missing_docs)]

extern crate alloc;

use core::alloc::Layout;
use core::cell::UnsafeCell;

use edgewise_core::abi::{ABI_VERSION, Engine, Status};

#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The engine. wasm32-unknown-unknown has no threads, and no export calls
/// another, so at most one `&mut` to it exists at a time.
struct Global(UnsafeCell<Option<Engine>>);
// SAFETY: single-threaded target; see above.
unsafe impl Sync for Global {}
static ENGINE: Global = Global(UnsafeCell::new(None));

fn engine() -> &'static mut Engine {
    // SAFETY: exports are not re-entrant and the target is single-threaded.
    unsafe { (*ENGINE.0.get()).get_or_insert_with(Engine::new) }
}

/// Borrows `len` bytes at `ptr`, or `None` if the range is outside linear memory.
fn bytes<'a>(ptr: u32, len: u32) -> Option<&'a [u8]> {
    let end = u64::from(ptr) + u64::from(len);
    let mem = core::arch::wasm32::memory_size(0) as u64 * 65_536;
    if end > mem || (ptr == 0 && len != 0) {
        return None;
    }
    if len == 0 {
        return Some(&[]);
    }
    // SAFETY: the range lies inside linear memory (checked above); the host
    // does not mutate it during the call.
    Some(unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) })
}

fn layout(len: u32) -> Option<Layout> {
    Layout::from_size_align(len.max(1) as usize, 8).ok()
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_abi_version() -> u32 {
    ABI_VERSION
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_alloc(len: u32) -> u32 {
    match layout(len) {
        // SAFETY: the layout has non-zero size.
        Some(l) => unsafe { alloc::alloc::alloc(l) as usize as u32 },
        None => 0,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_free(ptr: u32, len: u32) {
    if ptr == 0 {
        return;
    }
    if let Some(l) = layout(len) {
        // SAFETY: the host returns what `ew_alloc(len)` gave it, once.
        unsafe { alloc::alloc::dealloc(ptr as usize as *mut u8, l) }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_load_model(ptr: u32, len: u32) -> i32 {
    let e = engine();
    match bytes(ptr, len) {
        Some(b) => e.load_model(b) as i32,
        None => e.set_error(Status::BadPointer, "model pointer is outside guest memory") as i32,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_rank(bundle_ptr: u32, bundle_len: u32, ctx_ptr: u32, ctx_len: u32) -> i32 {
    let e = engine();
    match (bytes(bundle_ptr, bundle_len), bytes(ctx_ptr, ctx_len)) {
        (Some(b), Some(c)) => e.rank(b, c) as i32,
        _ => e.set_error(Status::BadPointer, "bundle or context pointer is outside guest memory") as i32,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_load_bundle(ptr: u32, len: u32, flags: u32) -> i32 {
    let e = engine();
    if flags & !1 != 0 {
        return e.set_error(Status::BadBundle, "ew_load_bundle: unknown flag bits (only bit 0 is defined)") as i32;
    }
    match bytes(ptr, len) {
        Some(b) => e.load_bundle(b, flags & 1 != 0) as i32,
        None => e.set_error(Status::BadPointer, "bundle pointer is outside guest memory") as i32,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_rank_loaded(ctx_ptr: u32, ctx_len: u32) -> i32 {
    let e = engine();
    match bytes(ctx_ptr, ctx_len) {
        Some(c) => e.rank_loaded(c) as i32,
        None => e.set_error(Status::BadPointer, "context pointer is outside guest memory") as i32,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_result_ptr() -> u32 {
    engine().result().as_ptr() as usize as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_result_len() -> u32 {
    engine().result().len() as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_error_ptr() -> u32 {
    engine().error().as_ptr() as usize as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn ew_error_len() -> u32 {
    engine().error().len() as u32
}
