requires packed_4x8_integer_dot_product;

// dot4(a, b): the dot product of two words read as four signed bytes each,
// by the built-in (one instruction where the hardware has it). Exact, the
// same value as dot4_unpacked.wgsl gives.
fn dot4(a: u32, b: u32) -> i32 {
    return dot4I8Packed(a, b);
}

