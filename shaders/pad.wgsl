// Padding, one thread per output element:
// - pad_like: zero padding of an NCHW map into a larger one; the input sits at (top, left),
// - slice_pad: ONNX Slice and Pad as one gather: along each NCHW axis output index i reads input index
//   start + i * step; an index outside the input reads a constant, its reflection or the nearest edge.
// Each entry point has globals of its own, sharing binding numbers.

struct Params {
    planes: u32, h: u32, w: u32, out_h: u32,
    out_w: u32, top: u32, left: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
@group(0) @binding(2) var<storage, read> input: array<elem>;

@compute @workgroup_size(WG)
fn pad_like(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let plane = p.out_h * p.out_w;
    if i >= p.planes * plane {
        return;
    }
    let y = i32((i % plane) / p.out_w) - i32(p.top);
    let x = i32(i % p.out_w) - i32(p.left);
    let inside = y >= 0 && y < i32(p.h) && x >= 0 && x < i32(p.w);
    let src = select(0u, ((i / plane) * p.h + u32(y)) * p.w + u32(x), inside);
    output[i] = select(elem(0.0), input[src], inside);
}

struct SlicePadParams {
    // NCHW dims of the input and the output.
    in_dims: vec4<u32>,
    out_dims: vec4<u32>,
    // Per axis: the source index of output index 0, and the step (validated on the host: every source index
    // start + i * step is within +-(2^31 - 1); i32 arithmetic wraps, so i * step overflowing on the way is harmless).
    start: vec4<i32>,
    step: vec4<i32>,
    // 0: constant (value), 1: reflect, 2: edge.
    mode: u32, value: f32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> sp: SlicePadParams;
@group(0) @binding(1) var<storage, read_write> slice_out: array<elem>;
@group(0) @binding(2) var<storage, read> slice_in: array<elem>;

// The input index that source index v reads along an axis of n elements, or -1 for the constant.
fn source_index(v: i32, n: i32) -> i32 {
    if v >= 0 && v < n {
        return v;
    }
    switch sp.mode {
        case 1u: {
            // NumPy "reflect", repeated: period 2 (n - 1) (the host checks n >= 2 where an axis reflects). The
            // pattern is symmetric about 0, so |v| serves, and the remainder stays unsigned (GLSL leaves % of
            // negative operands undefined).
            let period = u32(2 * (n - 1));
            let r = u32(abs(v)) % period;
            return i32(select(period - r, r, r < u32(n)));
        }
        case 2u: { return clamp(v, 0, n - 1); }
        default: { return -1; }
    }
}

@compute @workgroup_size(WG)
fn slice_pad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let o = sp.out_dims;
    if i >= o.x * o.y * o.z * o.w {
        return;
    }
    let at = vec4<i32>(vec4<u32>(i / (o.w * o.z * o.y), (i / (o.w * o.z)) % o.y, (i / o.w) % o.z, i % o.w));
    let d = vec4<i32>(sp.in_dims);
    let v = sp.start + at * sp.step;
    let src = vec4<i32>(source_index(v.x, d.x), source_index(v.y, d.y), source_index(v.z, d.z),
                        source_index(v.w, d.w));
    if any(src < vec4<i32>(0)) {
        slice_out[i] = elem(sp.value);
        return;
    }
    let s = vec4<u32>(src);
    slice_out[i] = slice_in[((s.x * sp.in_dims.y + s.y) * sp.in_dims.z + s.z) * sp.in_dims.w + s.w];
}
