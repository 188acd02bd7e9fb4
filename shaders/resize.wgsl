// torch.nn.functional.interpolate on NCHW maps: bilinear (align_corners false or true) and legacy nearest.
// Source coordinates are computed in f32 from the host's f32 scales, as PyTorch does for f32 tensors.
// Interpolation runs in f32 on `elem` values. One thread per output element.

struct Params {
    planes: u32, h_in: u32, w_in: u32, h_out: u32,
    // 0: bilinear, align_corners=False; 1: bilinear, align_corners=True; 2: nearest.
    w_out: u32, mode: u32, scale_h: f32, scale_w: f32,
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

@compute @workgroup_size(WG)
fn resize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.planes * p.h_out * p.w_out {
        return;
    }
    let ox = i % p.w_out;
    let oy = (i / p.w_out) % p.h_out;
    let plane = (i / (p.w_out * p.h_out)) * p.h_in * p.w_in;
    if p.mode == 2u {
        let y = nearest_index(oy, p.h_in, p.h_out, p.scale_h);
        let x = nearest_index(ox, p.w_in, p.w_out, p.scale_w);
        output[i] = input[plane + y * p.w_in + x];
        return;
    }
    let align_corners = p.mode == 1u;
    let ty = bilinear_taps(oy, p.h_in, p.h_out, p.scale_h, align_corners);
    let tx = bilinear_taps(ox, p.w_in, p.w_out, p.scale_w, align_corners);
    let r0 = plane + ty.i0 * p.w_in;
    let r1 = plane + ty.i1 * p.w_in;
    let v = ty.l0 * (tx.l0 * f32(input[r0 + tx.i0]) + tx.l1 * f32(input[r0 + tx.i1]))
          + ty.l1 * (tx.l0 * f32(input[r1 + tx.i0]) + tx.l1 * f32(input[r1 + tx.i1]));
    output[i] = elem(v);
}
