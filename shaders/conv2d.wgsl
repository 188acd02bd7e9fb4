// Direct 2-D convolution in NCHW with groups, per-side padding, stride and dilation, and a fused epilogue:
// act(acc + bias[co] + residual), written at a channel offset of a larger destination.
// Batch-norm is folded into the weights and bias on the host. One thread per output element.

struct Params {
    n: u32, c_in: u32, h_in: u32, w_in: u32,
    c_out: u32, h_out: u32, w_out: u32, groups: u32,
    k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
    pad_top: u32, pad_left: u32, dil_h: u32, dil_w: u32,
    dest_c: u32, dest_offset: u32, activation: u32, has_residual: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<f32>;
@group(0) @binding(2) var<storage, read> input: array<f32>;
// [c_out, c_in / groups, k_h, k_w]
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// [n, c_out, h_out, w_out] when has_residual
@group(0) @binding(5) var<storage, read> residual: array<f32>;

@compute @workgroup_size(WG)
fn conv2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    // Signed origin of the window in the unpadded input.
    let y0 = i32(oy * p.stride_h) - i32(p.pad_top);
    let x0 = i32(ox * p.stride_w) - i32(p.pad_left);

    var acc = 0.0;
    for (var ci = 0u; ci < cin_per_group; ci++) {
        let in_plane = (b * p.c_in + ci0 + ci) * p.h_in * p.w_in;
        let w_base = (co * cin_per_group + ci) * p.k_h * p.k_w;
        for (var ky = 0u; ky < p.k_h; ky++) {
            let y = y0 + i32(ky * p.dil_h);
            if y < 0 || y >= i32(p.h_in) {
                continue;
            }
            let row = in_plane + u32(y) * p.w_in;
            for (var kx = 0u; kx < p.k_w; kx++) {
                let x = x0 + i32(kx * p.dil_w);
                if x >= 0 && x < i32(p.w_in) {
                    acc += input[row + u32(x)] * weight[w_base + ky * p.k_w + kx];
                }
            }
        }
    }

    var v = acc + bias[co];
    if p.has_residual != 0u {
        v += residual[i];
    }
    let dest = ((b * p.dest_c + p.dest_offset + co) * p.h_out + oy) * p.w_out + ox;
    output[dest] = activate(v, p.activation);
}
