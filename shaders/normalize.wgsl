// Per-band normalisation of raw band values: out[c] = (v - mean[c]) / std[c], for any number of bands. The input is
// f32 bit patterns in u32 words (full f32 precision whatever `elem` is); the arithmetic runs in f32, only the result
// is stored as `elem`. One thread per element.

struct Params {
    total: u32, plane: u32, channels: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
@group(0) @binding(2) var<storage, read> bands: array<u32>;
// mean[0..C] then std[0..C], f32.
@group(0) @binding(3) var<storage, read> stats: array<f32>;

@compute @workgroup_size(WG)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.total {
        return;
    }
    let c = (i / p.plane) % p.channels;
    let v = bitcast<f32>(bands[i]);
    output[i] = elem((v - stats[c]) / stats[p.channels + c]);
}
