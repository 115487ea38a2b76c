// dot4(a, b): the dot product of two words read as four signed bytes each
// (lane 0 in bits 0..8), by unpacking the lanes. Exact on every device:
// extractBits on an i32 sign-extends, and the products and sums are integers.
fn dot4(a: u32, b: u32) -> i32 {
    let x = bitcast<i32>(a);
    let y = bitcast<i32>(b);
    return extractBits(x, 0u, 8u) * extractBits(y, 0u, 8u)
        + extractBits(x, 8u, 8u) * extractBits(y, 8u, 8u)
        + extractBits(x, 16u, 8u) * extractBits(y, 16u, 8u)
        + extractBits(x, 24u, 8u) * extractBits(y, 24u, 8u);
}

