// Prepended by the host to every atrous shader (see src/kernels/mod.rs), after the precision prelude
// (src/gpu/precision.rs), which defines `elem` and `elem4`: the float type of activations and convolution weights in
// storage, f32 or f16. Shaders load `f32(x)`, compute and accumulate in f32, and store `elem(v)`; biases and uniform
// parameters are always f32, indices and class maps u32.

// Threads per workgroup along x; WORKGROUP_SIZE on the host.
const WG: u32 = 64u;

// The flat thread index of a `Dispatch::Linear` grid, which folds the workgroups into x and y.
fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

// Activation codes of `Activation::code` on the host.
// Whether `x` is a NaN, from its bits: compilers may assume floats are never NaN and fold `x != x` away.
fn is_nan_bits(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// A NaN input gives a NaN output, as in PyTorch (`max` and `clamp` may drop it), so bad data stays visible.
fn activate(x: f32, kind: u32) -> f32 {
    var y: f32;
    switch kind {
        case 1u: { y = max(x, 0.0); }
        case 2u: { y = clamp(x, 0.0, 6.0); }
        case 3u: { y = x * clamp(x + 3.0, 0.0, 6.0) / 6.0; }
        case 4u: { y = clamp(x + 3.0, 0.0, 6.0) / 6.0; }
        case 5u: { y = 1.0 / (1.0 + exp(-x)); }
        default: { y = x; }
    }
    return select(y, x, is_nan_bits(x));
}
