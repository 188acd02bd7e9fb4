// Transposed 2-D convolution in NCHW with groups, stride, padding (output crop), output_padding and dilation, and
// a fused epilogue act(acc + bias[co]); batch-norm is folded into the weights and bias on the host. The sum runs in
// f32 whatever `elem` is.
//
// Gather form: a thread sums exactly the inputs whose scattered taps land on its outputs. Output row oy receives
// input row iy through tap ky when iy * stride - pad + ky * dil == oy, i.e. when (oy + pad - ky * dil) is a
// non-negative multiple of stride below h_in. This avoids zero insertion (stride^2 more work) and atomics.
//
// conv_transpose2d: one thread per output element, any groups, PyTorch's weight layout.
// conv_transpose2d_t8x4 (groups == 1): register-tiled. Which taps reach an output depends only on its phase,
// (oy + pad) mod stride, so a thread takes 8 output channels of 4 outputs of one row that share a column phase
// (ox, ox + stride_w, ...): they read 4 consecutive input columns through the same taps, and each loaded value
// feeds 8 (input) or 4 (weight) multiply-adds instead of one.

struct Params {
    n: u32, c_in: u32, h_in: u32, w_in: u32,
    c_out: u32, h_out: u32, w_out: u32, groups: u32,
    k_h: u32, k_w: u32, stride_h: u32, stride_w: u32,
    pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32,
    activation: u32, c_out4: u32, col_blocks: u32, groups_y: u32,
    // Channels of the destination and where channel 0 of the result goes (writing into a concatenation).
    dest_c: u32, dest_offset: u32,
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
    let dest = ((b * p.dest_c + p.dest_offset + co) * p.h_out + oy) * p.w_out + ox;
    output[dest] = elem(activate(acc + bias[co], p.activation));
}

// [ceil(c_out / 4)][k_h][k_w][c_in] vec4 over output channels (conv_transpose2d::fold_for, zero past c_out).
@group(0) @binding(3) var<storage, read> weight4: array<elem4>;

@compute @workgroup_size(64)
fn conv_transpose2d_t8x4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // Thread q covers (b, oy, column phase px, block jb of 4 columns of that phase), jb fastest.
    let q = (wid.z * p.groups_y + wid.y) * 64u + lid.x;
    let jb = q % p.col_blocks;
    let px = (q / p.col_blocks) % p.stride_w;
    let oy = (q / (p.col_blocks * p.stride_w)) % p.h_out;
    let b = q / (p.col_blocks * p.stride_w * p.h_out);
    if b >= p.n {
        return;
    }
    let ox0 = px + p.stride_w * 4u * jb;
    let plane = p.h_in * p.w_in;
    let base = b * p.c_in * plane;
    let cb0 = min(wid.x * 2u, p.c_out4 - 1u);
    let cb1 = min(wid.x * 2u + 1u, p.c_out4 - 1u);
    let shift_x = ((p.k_w * p.dil_w + p.stride_w - 1u) / p.stride_w) * p.stride_w;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.k_h; ky++) {
        let ty = i32(oy + p.pad_h) - i32(ky * p.dil_h);
        if ty < 0 || u32(ty) % p.stride_h != 0u || u32(ty) / p.stride_h >= p.h_in {
            continue;
        }
        let row = base + (u32(ty) / p.stride_h) * p.w_in;
        for (var kx = 0u; kx < p.k_w; kx++) {
            // tx = ox0 + pad - kx * dil may be negative; shifted by a multiple of the stride it is not, since
            // GLSL leaves % and / of negative integers undefined.
            let tx = ox0 + p.pad_w + shift_x - kx * p.dil_w;
            if tx % p.stride_w != 0u {
                continue;
            }
            let ix = i32(tx / p.stride_w) - i32(shift_x / p.stride_w);
            let m0 = ix >= 0 && ix < i32(p.w_in) && ox0 < p.w_out;
            let m1 = ix + 1 >= 0 && ix + 1 < i32(p.w_in) && ox0 + p.stride_w < p.w_out;
            let m2 = ix + 2 >= 0 && ix + 2 < i32(p.w_in) && ox0 + 2u * p.stride_w < p.w_out;
            let m3 = ix + 3 >= 0 && ix + 3 < i32(p.w_in) && ox0 + 3u * p.stride_w < p.w_out;
            if !(m0 || m1 || m2 || m3) {
                continue;
            }
            var i0 = select(0u, row + u32(ix), m0);
            var i1 = select(0u, row + u32(ix + 1), m1);
            var i2 = select(0u, row + u32(ix + 2), m2);
            var i3 = select(0u, row + u32(ix + 3), m3);
            let tap = (ky * p.k_w + kx) * p.c_in;
            var w0 = (cb0 * p.k_h * p.k_w) * p.c_in + tap;
            var w1 = (cb1 * p.k_h * p.k_w) * p.c_in + tap;
            for (var ci = 0u; ci < p.c_in; ci++) {
                let x0 = select(0.0, f32(input[i0]), m0);
                let x1 = select(0.0, f32(input[i1]), m1);
                let x2 = select(0.0, f32(input[i2]), m2);
                let x3 = select(0.0, f32(input[i3]), m3);
                let wa = vec4<f32>(weight4[w0]);
                let wb = vec4<f32>(weight4[w1]);
                a0 += x0 * wa;
                a1 += x1 * wa;
                a2 += x2 * wa;
                a3 += x3 * wa;
                b0 += x0 * wb;
                b1 += x1 * wb;
                b2 += x2 * wb;
                b3 += x3 * wb;
                i0 += select(0u, plane, m0);
                i1 += select(0u, plane, m1);
                i2 += select(0u, plane, m2);
                i3 += select(0u, plane, m3);
                w0 += 1u;
                w1 += 1u;
            }
        }
    }
    let co0 = wid.x * 8u;
    store_t(b, co0, oy, ox0, a0, a1, a2, a3);
    store_t(b, co0 + 4u, oy, ox0, b0, b1, b2, b3);
}

// Writes 4 channels from co of the 4 phase-sharing columns from ox0, skipping those past c_out and w_out.
fn store_t(b: u32, co: u32, oy: u32, ox0: u32, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>) {
    let cols = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var j = 0u; j < 4u; j++) {
        let ox = ox0 + j * p.stride_w;
        if ox >= p.w_out {
            return;
        }
        for (var c = 0u; c < 4u; c++) {
            if co + c < p.c_out {
                let v = activate(cols[j][c] + bias[co + c], p.activation);
                output[((b * p.dest_c + p.dest_offset + co + c) * p.h_out + oy) * p.w_out + ox] = elem(v);
            }
        }
    }
}
