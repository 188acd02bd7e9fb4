// Transposed 2-D convolution in NCHW with groups, stride, padding (output crop), output_padding and dilation, and
// a fused epilogue act(acc + bias[co]); batch-norm is folded into the weights and bias on the host. The sum runs in
// f32 whatever `elem` is.
//
// Gather form: one thread per output element sums exactly the inputs whose scattered taps land on it. Output row
// oy receives input row iy through tap ky when iy * stride - pad + ky * dil == oy, i.e. when (oy + pad - ky * dil)
// is a non-negative multiple of stride below h_in. This avoids zero insertion (stride^2 more work) and atomics.

struct Params {
    n: u32, c_in: u32, h_in: u32, w_in: u32,
    c_out: u32, h_out: u32, w_out: u32, groups: u32,
    k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
    pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32,
    activation: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
@group(0) @binding(2) var<storage, read> input: array<elem>;
// PyTorch's layout [c_in, c_out / groups, k_h, k_w], scaled by the folded batch-norm.
@group(0) @binding(3) var<storage, read> weight: array<elem>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

@compute @workgroup_size(WG)
fn conv_transpose2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let total = p.n * p.c_out * p.h_out * p.w_out;
    if i >= total {
        return;
    }
    let ox = i % p.w_out;
    let oy = (i / p.w_out) % p.h_out;
    let co = (i / (p.w_out * p.h_out)) % p.c_out;
    let b = i / (p.w_out * p.h_out * p.c_out);

    let cin_per_group = p.c_in / p.groups;
    let cout_per_group = p.c_out / p.groups;
    let ci0 = (co / cout_per_group) * cin_per_group;
    let co_local = co % cout_per_group;
    let plane = p.h_in * p.w_in;
    let taps = p.k_h * p.k_w;
    // Consecutive input channels of the group are this far apart in the weights.
    let w_ci_stride = cout_per_group * taps;

    var acc = 0.0;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let ty = i32(oy + p.pad_h) - i32(ky * p.dil_h);
        if ty < 0 || u32(ty) % p.stride_h != 0u {
            continue;
        }
        let iy = u32(ty) / p.stride_h;
        if iy >= p.h_in {
            continue;
        }
        for (var kx = 0u; kx < p.k_w; kx++) {
            let tx = i32(ox + p.pad_w) - i32(kx * p.dil_w);
            if tx < 0 || u32(tx) % p.stride_w != 0u {
                continue;
            }
            let ix = u32(tx) / p.stride_w;
            if ix >= p.w_in {
                continue;
            }
            var x_idx = (b * p.c_in + ci0) * plane + iy * p.w_in + ix;
            var w_idx = (ci0 * cout_per_group + co_local) * taps + ky * p.k_w + kx;
            for (var ci = 0u; ci < cin_per_group; ci++) {
                acc += f32(input[x_idx]) * f32(weight[w_idx]);
                x_idx += plane;
                w_idx += w_ci_stride;
            }
        }
    }
    output[i] = elem(activate(acc + bias[co], p.activation));
}
