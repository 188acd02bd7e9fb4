// Encoding one class's probability as f32 or f16 texel rows (see src/ops/encode.rs and shaders/encode.wgsl, whose
// parameters these are). One thread per output word; words past a row's last texel are zero.

struct Params {
    h: u32, w: u32, c: u32, row_words: u32,
    which: u32, palette_len: u32, bgra: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<u32>;
@group(0) @binding(2) var<storage, read> probabilities: array<elem>;

// A one-channel model's output is the foreground probability: class 1 reads it, class 0 its complement.
fn probability(y: u32, x: u32) -> f32 {
    if p.c == 1u {
        let v = f32(probabilities[y * p.w + x]);
        return select(1.0 - v, v, p.which == 1u);
    }
    return f32(probabilities[(p.which * p.h + y) * p.w + x]);
}

@compute @workgroup_size(WG)
fn probability_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let y = i / p.row_words;
    let x = i % p.row_words;
    if y >= p.h {
        return;
    }
    var value = 0u;
    if x < p.w {
        value = bitcast<u32>(probability(y, x));
    }
    output[i] = value;
}

@compute @workgroup_size(WG)
fn probability_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let y = i / p.row_words;
    let x = 2u * (i % p.row_words);
    if y >= p.h {
        return;
    }
    var pair = vec2<f32>(0.0);
    if x < p.w {
        pair.x = probability(y, x);
    }
    if x + 1u < p.w {
        pair.y = probability(y, x + 1u);
    }
    output[i] = pack2x16float(pair);
}
