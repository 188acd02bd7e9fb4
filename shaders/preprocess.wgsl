// Image preprocessing: 8-bit RGB or RGBA pixels (packed four bytes to a u32, little-endian), or a region of a texture,
// resized bilinearly with align_corners=False and normalised into a 1 x 3 x H x W f32 tensor. The raw 0..255 values
// are interpolated first, then `(v * value_scale - mean[c]) / std[c]`, in f32; only the result is stored as `elem`.
// One thread per output element.

struct Params {
    w_in: u32, h_in: u32, channels: u32, h_out: u32,
    // bgr: output channel 0 takes the blue byte.
    w_out: u32, bgr: u32, scale_h: f32, scale_w: f32,
    value_scale: f32, mean0: f32, mean1: f32, mean2: f32,
    std0: f32, std1: f32, std2: f32,
    // preprocess_texture: 0 unorm8 (the stored byte), 1 sRGB8 (linear values re-encoded to the stored byte),
    // 2 float (value * 255, unrounded).
    texels: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
// preprocess: the packed pixels. preprocess_texture: the region's origin (x, y) in the texture, set per run.
@group(0) @binding(2) var<storage, read> image: array<u32>;
@group(0) @binding(3) var frame: texture_2d<f32>;

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

// The sRGB transfer function, linear to encoded, per channel.
fn srgb_encode(linear: f32) -> f32 {
    if linear <= 0.0031308 {
        return 12.92 * linear;
    }
    return 1.055 * pow(linear, 1.0 / 2.4) - 0.055;
}

// A texel of the frame as the 0..255 value `pixel` gives for the same pixel of an 8-bit image.
fn texel(y: u32, x: u32, channel: u32) -> f32 {
    let v = textureLoad(frame, vec2<u32>(image[0] + x, image[1] + y), 0)[channel];
    switch p.texels {
        case 0u: { return round(v * 255.0); }
        case 1u: { return round(srgb_encode(v) * 255.0); }
        default: { return v * 255.0; }
    }
}

// Where output element `i` samples: the bilinear taps, the output channel and the source channel it reads.
struct Sample {
    ty: Taps, tx: Taps, c: u32, channel: u32,
}

fn sample(i: u32) -> Sample {
    let ox = i % p.w_out;
    let oy = (i / p.w_out) % p.h_out;
    let c = i / (p.w_out * p.h_out);
    return Sample(taps(oy, p.h_in, p.h_out, p.scale_h), taps(ox, p.w_in, p.w_out, p.scale_w), c,
                  select(c, 2u - c, p.bgr != 0u));
}

fn normalise(v: f32, c: u32) -> elem {
    let mean = select(select(p.mean2, p.mean1, c == 1u), p.mean0, c == 0u);
    let deviation = select(select(p.std2, p.std1, c == 1u), p.std0, c == 0u);
    return elem((v * p.value_scale - mean) / deviation);
}

// The two entry points differ only in what they read (a pixel buffer or a texture), so that neither binds the
// other's source.
@compute @workgroup_size(WG)
fn preprocess(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= 3u * p.h_out * p.w_out {
        return;
    }
    let s = sample(i);
    let v = s.ty.l0 * (s.tx.l0 * pixel(s.ty.i0, s.tx.i0, s.channel) + s.tx.l1 * pixel(s.ty.i0, s.tx.i1, s.channel))
          + s.ty.l1 * (s.tx.l0 * pixel(s.ty.i1, s.tx.i0, s.channel) + s.tx.l1 * pixel(s.ty.i1, s.tx.i1, s.channel));
    output[i] = normalise(v, s.c);
}

@compute @workgroup_size(WG)
fn preprocess_texture(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= 3u * p.h_out * p.w_out {
        return;
    }
    let s = sample(i);
    let v = s.ty.l0 * (s.tx.l0 * texel(s.ty.i0, s.tx.i0, s.channel) + s.tx.l1 * texel(s.ty.i0, s.tx.i1, s.channel))
          + s.ty.l1 * (s.tx.l0 * texel(s.ty.i1, s.tx.i0, s.channel) + s.tx.l1 * texel(s.ty.i1, s.tx.i1, s.channel));
    output[i] = normalise(v, s.c);
}
