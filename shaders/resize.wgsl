// torch.nn.functional.interpolate on NCHW maps: bilinear (align_corners false or true) and legacy nearest; ONNX
// Resize linear and nearest with any coordinate transform and rounding mode.
// Source coordinates are computed in f32 from the host's f32 scales, as PyTorch does for f32 tensors, and in ONNX
// modes as onnxruntime does. Interpolation runs in f32 on `elem` values.

struct Params {
    planes: u32, h_in: u32, w_in: u32, h_out: u32,
    // 0: bilinear, align_corners=False; 1: bilinear, align_corners=True; 2: nearest; 3: ONNX linear;
    // 4: ONNX nearest.
    w_out: u32, mode: u32, scale_h: f32, scale_w: f32,
    // ONNX nearest's rounding (`NearestRounding::code`).
    rounding: u32, pad0: u32, pad1: u32, pad2: u32,
    // ONNX modes, per axis (`OnnxAxis`): coordinate = ((x + offset) * multiplier) / divisor + shift.
    axis_h: vec4<f32>, axis_w: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
@group(0) @binding(2) var<storage, read> input: array<elem>;

struct Taps {
    i0: u32, i1: u32, l0: f32, l1: f32,
}

// PyTorch's compute_source_index_and_lambda (CPU): an axis of unchanged length copies.
fn bilinear_taps(dst: u32, len_in: u32, len_out: u32, scale: f32, align_corners: bool) -> Taps {
    if len_in == len_out {
        return Taps(dst, dst, 1.0, 0.0);
    }
    var src = scale * f32(dst);
    if !align_corners {
        src = max(scale * (f32(dst) + 0.5) - 0.5, 0.0);
    }
    let i0 = min(u32(floor(src)), len_in - 1u);
    let i1 = select(i0, i0 + 1u, i0 < len_in - 1u);
    let l1 = clamp(src - f32(i0), 0.0, 1.0);
    return Taps(i0, i1, 1.0 - l1, l1);
}

// PyTorch's nearest_idx (CPU), including its shortcuts for unchanged and doubled lengths, which differ from the
// formula when a scale factor rather than a size was given.
fn nearest_index(dst: u32, len_in: u32, len_out: u32, scale: f32) -> u32 {
    if len_out == len_in {
        return dst;
    }
    if len_out == 2u * len_in {
        return dst >> 1u;
    }
    return min(u32(floor(f32(dst) * scale)), len_in - 1u);
}

// onnxruntime's get_original_coordinate, in its order of operations (multiplying by 1 and adding 0 are exact).
fn onnx_coordinate(dst: u32, a: vec4<f32>) -> f32 {
    return ((f32(dst) + a.x) * a.y) / a.z + a.w;
}

// onnxruntime's UpsampleBilinear taps: the coordinate clamped to [0, in - 1], its floor, the next index (clamped),
// weights |x - i1| and |x - i0|, one half each where both indices are the last.
fn onnx_linear_taps(dst: u32, len_in: u32, a: vec4<f32>) -> Taps {
    let x = clamp(onnx_coordinate(dst, a), 0.0, f32(len_in - 1u));
    let i0 = min(u32(x), len_in - 1u);
    let i1 = min(i0 + 1u, len_in - 1u);
    if i0 == i1 {
        return Taps(i0, i1, 0.5, 0.5);
    }
    return Taps(i0, i1, abs(x - f32(i1)), abs(x - f32(i0)));
}

// ONNX nearest: the coordinate rounded (x - floor(x) is exact in f32), clamped to [0, in - 1]. A fraction within
// 1e-6 of one half is a tie, as onnxruntime rounds (`NearestRounding::round`).
fn onnx_nearest_index(dst: u32, len_in: u32, a: vec4<f32>) -> u32 {
    let x = onnx_coordinate(dst, a);
    let f = floor(x);
    let d = x - f;
    let tie = abs(d - 0.5) < 1e-6;
    var up: bool;
    switch p.rounding {
        case 0u: { up = !tie && d > 0.5; }
        case 1u: { up = tie || d > 0.5; }
        case 2u: { up = false; }
        default: { up = d > 0.0; }
    }
    return u32(clamp(select(f, f + 1.0, up), 0.0, f32(len_in - 1u)));
}

// One thread per run of up to RUN consecutive outputs of a row (the row's source taps and the position's integer
// divisions, which a CPU adapter's SIMD lanes do one by one, once per run).
const RUN: u32 = 4u;

@compute @workgroup_size(WG)
fn resize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = linear_id(wid, nwg, lid);
    let runs = (p.w_out + RUN - 1u) / RUN;
    let row = t / runs;
    if row >= p.planes * p.h_out {
        return;
    }
    let x0 = (t - row * runs) * RUN;
    let oy = row % p.h_out;
    let plane = (row / p.h_out) * p.h_in * p.w_in;
    let out0 = row * p.w_out;
    let end = min(x0 + RUN, p.w_out);
    if p.mode == 2u || p.mode == 4u {
        var y: u32;
        if p.mode == 2u {
            y = nearest_index(oy, p.h_in, p.h_out, p.scale_h);
        } else {
            y = onnx_nearest_index(oy, p.h_in, p.axis_h);
        }
        let r = plane + y * p.w_in;
        for (var ox = x0; ox < end; ox++) {
            var x: u32;
            if p.mode == 2u {
                x = nearest_index(ox, p.w_in, p.w_out, p.scale_w);
            } else {
                x = onnx_nearest_index(ox, p.w_in, p.axis_w);
            }
            output[out0 + ox] = input[r + x];
        }
        return;
    }
    let onnx = p.mode == 3u;
    let align_corners = p.mode == 1u;
    var ty: Taps;
    if onnx {
        ty = onnx_linear_taps(oy, p.h_in, p.axis_h);
    } else {
        ty = bilinear_taps(oy, p.h_in, p.h_out, p.scale_h, align_corners);
    }
    let r0 = plane + ty.i0 * p.w_in;
    let r1 = plane + ty.i1 * p.w_in;
    for (var ox = x0; ox < end; ox++) {
        var tx: Taps;
        if onnx {
            tx = onnx_linear_taps(ox, p.w_in, p.axis_w);
        } else {
            tx = bilinear_taps(ox, p.w_in, p.w_out, p.scale_w, align_corners);
        }
        let v = ty.l0 * (tx.l0 * f32(input[r0 + tx.i0]) + tx.l1 * f32(input[r0 + tx.i1]))
              + ty.l1 * (tx.l0 * f32(input[r1 + tx.i0]) + tx.l1 * f32(input[r1 + tx.i1]));
        output[out0 + ox] = elem(v);
    }
}
