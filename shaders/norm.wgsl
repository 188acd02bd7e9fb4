// Group normalisation of an NCHW map: one workgroup per (image, group), whose channels are contiguous in memory.
// Two passes for the statistics (mean, then the centred sum of squares: no cancellation on maps with a large mean),
// then the normalised, scaled, shifted and activated write. Grids over the per-dimension limit fold into y.
// Activations are `elem` in storage (the host's precision prelude); statistics and arithmetic are f32.

struct Params {
    groups_total: u32, span: u32, plane: u32, channels_per_group: u32,
    groups: u32, activation: u32, eps: f32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
@group(0) @binding(2) var<storage, read> input: array<elem>;
// Per-channel scale (gamma) and shift (beta).
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> partial: array<f32, WG>;

// The sum of `v` over the workgroup, returned to every thread. Called in uniform control flow only.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Everyone has read the total before a next call overwrites it.
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn group_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let id = wid.y * nwg.x + wid.x;
    if id >= p.groups_total {
        return;
    }
    let base = id * p.span;
    let count = f32(p.span);
    var sum = 0.0;
    for (var i = lid.x; i < p.span; i += WG) {
        sum += f32(input[base + i]);
    }
    let mean = workgroup_sum(lid.x, sum) / count;
    var squares = 0.0;
    for (var i = lid.x; i < p.span; i += WG) {
        let d = f32(input[base + i]) - mean;
        squares += d * d;
    }
    let inv_std = 1.0 / sqrt(workgroup_sum(lid.x, squares) / count + p.eps);
    let first = (id % p.groups) * p.channels_per_group;
    for (var i = lid.x; i < p.span; i += WG) {
        let c = first + i / p.plane;
        let y = (f32(input[base + i]) - mean) * inv_std * weight[c] + bias[c];
        output[base + i] = elem(activate(y, p.activation));
    }
}
