// Softmax and argmax over the channel axis of an NCHW map. One thread per (batch, pixel); the channel loop strides
// by the plane size, so neighbouring threads read neighbouring addresses. Values are `elem` in storage; the maximum,
// the exponentials and their sum are f32.

struct Params {
    n: u32, c: u32, plane: u32, threshold: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// softmax: [n, c, h, w] out, [n, c, h, w] in
@group(0) @binding(1) var<storage, read_write> softmax_out: array<elem>;
@group(0) @binding(2) var<storage, read> softmax_in: array<elem>;

// threshold: [n, 1, h, w] class map out, [n, 1, h, w] in
@group(0) @binding(1) var<storage, read_write> threshold_out: array<u32>;
@group(0) @binding(2) var<storage, read> threshold_in: array<elem>;

// argmax: [n, 1, h, w] class map out, [n, c, h, w] in
@group(0) @binding(1) var<storage, read_write> argmax_out: array<u32>;
@group(0) @binding(2) var<storage, read> argmax_in: array<elem>;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.n * p.plane {
        return;
    }
    let base = (i / p.plane) * p.c * p.plane + i % p.plane;
    var m = f32(softmax_in[base]);
    for (var c = 1u; c < p.c; c++) {
        m = max(m, f32(softmax_in[base + c * p.plane]));
    }
    var sum = 0.0;
    for (var c = 0u; c < p.c; c++) {
        sum += exp(f32(softmax_in[base + c * p.plane]) - m);
    }
    // The exponentials are recomputed rather than stored and rescaled, so an f16 output is rounded once.
    let inv = 1.0 / sum;
    for (var c = 0u; c < p.c; c++) {
        softmax_out[base + c * p.plane] = elem(exp(f32(softmax_in[base + c * p.plane]) - m) * inv);
    }
}

@compute @workgroup_size(WG)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.n * p.plane {
        return;
    }
    let base = (i / p.plane) * p.c * p.plane + i % p.plane;
    var best = f32(argmax_in[base]);
    var index = 0u;
    for (var c = 1u; c < p.c; c++) {
        let v = f32(argmax_in[base + c * p.plane]);
        // Strict: a tie keeps the first channel, as torch.argmax does.
        if v > best {
            best = v;
            index = c;
        }
    }
    argmax_out[i] = index;
}

// The class map of a one-channel probability (a sigmoid segmenter): class 1 where p > threshold. Argmax over one
// channel would always give 0.
@compute @workgroup_size(WG)
fn threshold(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.n * p.plane {
        return;
    }
    threshold_out[i] = select(0u, 1u, f32(threshold_in[i]) > p.threshold);
}
