// Image preprocessing: 8-bit RGB or RGBA pixels (packed four bytes to a u32, little-endian) resized bilinearly with
// align_corners=False and normalised into a 1 x 3 x H x W f32 tensor. The raw 0..255 values are interpolated first,
// then `(v * value_scale - mean[c]) / std[c]`, in f32; only the result is stored as `elem`. One thread per output
// element.

struct Params {
    w_in: u32, h_in: u32, channels: u32, h_out: u32,
    // bgr: output channel 0 takes the blue byte.
    w_out: u32, bgr: u32, scale_h: f32, scale_w: f32,
    value_scale: f32, mean0: f32, mean1: f32, mean2: f32,
    std0: f32, std1: f32, std2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
@group(0) @binding(2) var<storage, read> image: array<u32>;

struct Taps {
    i0: u32, i1: u32, l0: f32, l1: f32,
}

// PyTorch's bilinear source index and weights, align_corners=False (see shaders/resize.wgsl).
fn taps(dst: u32, len_in: u32, len_out: u32, scale: f32) -> Taps {
    if len_in == len_out {
        return Taps(dst, dst, 1.0, 0.0);
    }
    let src = max(scale * (f32(dst) + 0.5) - 0.5, 0.0);
    let i0 = min(u32(floor(src)), len_in - 1u);
    let i1 = select(i0, i0 + 1u, i0 < len_in - 1u);
    let l1 = clamp(src - f32(i0), 0.0, 1.0);
    return Taps(i0, i1, 1.0 - l1, l1);
}

fn pixel(y: u32, x: u32, channel: u32) -> f32 {
    let b = (y * p.w_in + x) * p.channels + channel;
    return f32((image[b / 4u] >> (8u * (b % 4u))) & 0xffu);
}

@compute @workgroup_size(WG)
fn preprocess(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= 3u * p.h_out * p.w_out {
        return;
    }
    let ox = i % p.w_out;
    let oy = (i / p.w_out) % p.h_out;
    let c = i / (p.w_out * p.h_out);
    let channel = select(c, 2u - c, p.bgr != 0u);
    let ty = taps(oy, p.h_in, p.h_out, p.scale_h);
    let tx = taps(ox, p.w_in, p.w_out, p.scale_w);
    let v = ty.l0 * (tx.l0 * pixel(ty.i0, tx.i0, channel) + tx.l1 * pixel(ty.i0, tx.i1, channel))
          + ty.l1 * (tx.l0 * pixel(ty.i1, tx.i0, channel) + tx.l1 * pixel(ty.i1, tx.i1, channel));
    let mean = select(select(p.mean2, p.mean1, c == 1u), p.mean0, c == 0u);
    let deviation = select(select(p.std2, p.std1, c == 1u), p.std0, c == 0u);
    output[i] = elem((v * p.value_scale - mean) / deviation);
}
