// Direct 2-D convolution in NCHW with groups, per-side padding, stride and dilation, and a fused epilogue:
// act(acc + bias[co] + residual), written at a channel offset of a larger destination.
// Batch-norm is folded into the weights and bias on the host. One thread per output element. Sums run in f32
// whatever `elem` is.

// The host's `TileGeometry` (shared with the tiled and split-K kernels), then the group count.
struct Params {
    n: u32, c_in: u32, h_in: u32, w_in: u32,
    c_out: u32, h_out: u32, w_out: u32, k_h: u32,
    k_w: u32, stride_h: u32, stride_w: u32, pad_top: u32,
    pad_left: u32, dil_h: u32, dil_w: u32, dest_c: u32,
    dest_offset: u32, activation: u32, has_residual: u32, c_out4: u32,
    groups: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
@group(0) @binding(2) var<storage, read> input: array<elem>;
// [c_out, c_in / groups, k_h, k_w]
@group(0) @binding(3) var<storage, read> weight: array<elem>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// [n, c_out, h_out, w_out] when has_residual == 1
@group(0) @binding(5) var<storage, read> residual: array<elem>;

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
                    acc += f32(input[row + u32(x)]) * f32(weight[w_base + ky * p.k_w + kx]);
                }
            }
        }
    }

    var v = acc + bias[co];
    let dest = ((b * p.dest_c + p.dest_offset + co) * p.h_out + oy) * p.w_out + ox;
    // 1: a residual tensor of the output's shape; 2: the residual is the destination itself (in place).
    if p.has_residual == 1u {
        v += f32(residual[i]);
    } else if p.has_residual == 2u {
        v += f32(output[dest]);
    }
    output[dest] = elem(activate(v, p.activation));
}

// Depthwise convolution (groups == c_in == c_out), same parameters and weights as `conv2d`. Each thread computes 4
// consecutive output pixels of one row of one channel, sharing each weight load and row check among them.
@compute @workgroup_size(WG)
fn conv2d_depthwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let tiles_w = (p.w_out + 3u) / 4u;
    if i >= p.n * p.c_out * p.h_out * tiles_w {
        return;
    }
    let ox0 = (i % tiles_w) * 4u;
    let oy = (i / tiles_w) % p.h_out;
    // b * c_out + co, and c_in == c_out
    let bc = i / (tiles_w * p.h_out);
    let co = bc % p.c_out;
    let in_plane = bc * p.h_in * p.w_in;
    let y0 = i32(oy * p.stride_h) - i32(p.pad_top);
    let x0 = i32(ox0 * p.stride_w) - i32(p.pad_left);
    let sx = vec4<i32>(0, 1, 2, 3) * i32(p.stride_w);
    let w_in = i32(p.w_in);

    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.k_h; ky++) {
        let y = y0 + i32(ky * p.dil_h);
        if y < 0 || y >= i32(p.h_in) {
            continue;
        }
        let row = in_plane + u32(y) * p.w_in;
        for (var kx = 0u; kx < p.k_w; kx++) {
            let xs = vec4<i32>(x0 + i32(kx * p.dil_w)) + sx;
            let ok = xs >= vec4<i32>(0) & xs < vec4<i32>(w_in);
            let at = vec4<u32>(clamp(xs, vec4<i32>(0), vec4<i32>(w_in - 1))) + vec4<u32>(row);
            let v = vec4<f32>(vec4<elem>(input[at.x], input[at.y], input[at.z], input[at.w]));
            let w = f32(weight[(co * p.k_h + ky) * p.k_w + kx]);
            acc = fma(select(vec4<f32>(0.0), v, ok), vec4<f32>(w), acc);
        }
    }

    let hw = p.h_out * p.w_out;
    let b = bc / p.c_out;
    let out_row = ((b * p.dest_c + p.dest_offset + co) * p.h_out + oy) * p.w_out;
    let res_row = (bc * p.h_out + oy) * p.w_out;
    for (var j = 0u; j < 4u; j++) {
        let ox = ox0 + j;
        if ox >= p.w_out {
            break;
        }
        var v = acc[j] + bias[co];
        if p.has_residual == 1u {
            v += f32(residual[res_row + ox]);
        } else if p.has_residual == 2u {
            v += f32(output[out_row + ox]);
        }
        output[out_row + ox] = elem(activate(v, p.activation));
    }
}
