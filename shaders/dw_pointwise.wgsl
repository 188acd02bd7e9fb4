// A depthwise convolution and the 1 x 1 convolution that reads it, in one pass (MobileNet's inverted residuals:
// depthwise, then project). The depthwise result of each pixel and channel is computed into a register and
// multiplied into the 1 x 1 conv's accumulators at once, so it is never written to memory: the block's largest
// tensor costs neither bandwidth nor a buffer.
//
// Each thread computes every output channel (at most 32) of two output pixels, 64 apart in the flattened
// (n, y, x) index so that neighbouring threads read neighbouring inputs and write neighbouring outputs. Both convs
// carry their folded bias; the depthwise one its activation, the 1 x 1 one the usual epilogue
// act(acc + bias[co] + residual) written at a channel offset of a larger destination.
//
// Weights as the conv2d host folds them (kernels::conv2d::fold): the depthwise one plain, [c_mid][k_h][k_w]; the
// 1 x 1 one as vec4 over output channels, [ceil(c_out / 4)][c_mid], zero past c_out.

struct DwpParams {
    n: u32, c_mid: u32, h_in: u32, w_in: u32,
    h_out: u32, w_out: u32,
    stride_h: u32, stride_w: u32, pad_top: u32, pad_left: u32,
    dil_h: u32, dil_w: u32, mid_activation: u32, c_out: u32,
    dest_c: u32, dest_offset: u32, activation: u32, has_residual: u32,
    blocks_x: u32,
}

// ceil(c_out / 4) and the depthwise window, fixed per pipeline so that the code for unused accumulators folds away
// and the tap loops unroll.
override OUT4: u32 = 8u;
override KH: u32 = 3u;
override KW: u32 = 3u;

@group(0) @binding(0) var<uniform> p: DwpParams;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
// The depthwise conv's input, [n, c_mid, h_in, w_in].
@group(0) @binding(2) var<storage, read> input: array<elem>;
@group(0) @binding(3) var<storage, read> dw_weight: array<elem>;
@group(0) @binding(4) var<storage, read> dw_bias: array<f32>;
@group(0) @binding(5) var<storage, read> pw_weight: array<elem4>;
@group(0) @binding(6) var<storage, read> pw_bias: array<f32>;
// [n, c_out, h_out, w_out] when has_residual == 1
@group(0) @binding(7) var<storage, read> residual: array<elem>;

// Where an output pixel's depthwise window starts: the offset of its image in the input, and the top-left tap.
struct Window {
    ok: bool,
    image: u32,
    y: i32,
    x: i32,
}

fn window(q: u32) -> Window {
    let hw = p.h_out * p.w_out;
    let r = q % hw;
    return Window(
        q < p.n * hw,
        (q / hw) * p.c_mid * p.h_in * p.w_in,
        i32((r / p.w_out) * p.stride_h) - i32(p.pad_top),
        i32((r % p.w_out) * p.stride_w) - i32(p.pad_left),
    );
}

// The depthwise results of channel c at both pixels of a thread, bias and activation applied. Taps in the padding
// (or of a pixel past the last) read index 0 and are zeroed by select rather than branched around, so the lanes of a
// SIMD driver stay together; the window's size is constant per pipeline, so the tap loops unroll and their indices,
// which do not depend on c, can be computed once per thread.
fn depthwise(a: Window, b: Window, c: u32) -> vec2<f32> {
    let plane = c * p.h_in * p.w_in;
    let taps = c * KH * KW;
    var acc = vec2<f32>(0.0);
    for (var ky = 0u; ky < KH; ky++) {
        let ya = a.y + i32(ky * p.dil_h);
        let yb = b.y + i32(ky * p.dil_h);
        let rows = vec2<bool>(a.ok && ya >= 0 && ya < i32(p.h_in), b.ok && yb >= 0 && yb < i32(p.h_in));
        for (var kx = 0u; kx < KW; kx++) {
            let xa = a.x + i32(kx * p.dil_w);
            let xb = b.x + i32(kx * p.dil_w);
            let ma = rows.x && xa >= 0 && xa < i32(p.w_in);
            let mb = rows.y && xb >= 0 && xb < i32(p.w_in);
            let ia = select(0u, a.image + plane + u32(ya) * p.w_in + u32(xa), ma);
            let ib = select(0u, b.image + plane + u32(yb) * p.w_in + u32(xb), mb);
            let v = vec2<f32>(select(0.0, f32(input[ia]), ma), select(0.0, f32(input[ib]), mb));
            acc = fma(vec2<f32>(f32(dw_weight[taps + ky * KW + kx])), v, acc);
        }
    }
    let bias = dw_bias[c];
    return vec2<f32>(activate(acc.x + bias, p.mid_activation), activate(acc.y + bias, p.mid_activation));
}

// Writes output channels 4g..4g+3 (those below c_out) of pixel q: bias, residual, activation, channel offset.
fn store(q: u32, g: u32, acc: vec4<f32>) {
    let hw = p.h_out * p.w_out;
    let b = q / hw;
    let r = q % hw;
    for (var j = 0u; j < 4u; j++) {
        let co = g * 4u + j;
        if co >= p.c_out {
            return;
        }
        let dest = (b * p.dest_c + p.dest_offset + co) * hw + r;
        var v = acc[j] + pw_bias[co];
        // 1: a residual tensor of the output's shape; 2: the residual is the destination itself (in place).
        if p.has_residual == 1u {
            v += f32(residual[(b * p.c_out + co) * hw + r]);
        } else if p.has_residual == 2u {
            v += f32(output[dest]);
        }
        output[dest] = elem(activate(v, p.activation));
    }
}

// Writes every output channel of pixel q, once per thread and pixel at the end.
fn store_pixel(q: u32, acc: array<vec4<f32>, 8>) {
    for (var g = 0u; g < OUT4; g++) {
        store(q, g, acc[g]);
    }
}

// One vec4 of output channels per accumulator, a_g for the first pixel and b_g for the second: named variables, not
// an array, so no driver has to promote them to registers. `OUT4 > g` is constant per pipeline and folds away.
@compute @workgroup_size(WG)
fn dw_pointwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q0 = (wid.y * p.blocks_x + wid.x) * 2u * WG + lid.x;
    let q1 = q0 + WG;
    let a = window(q0);
    let b = window(q1);
    var a0 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var b5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var b6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var b7 = vec4<f32>(0.0);
    for (var c = 0u; c < p.c_mid; c++) {
        let d = depthwise(a, b, c);
        let d0 = vec4<f32>(d.x);
        let d1 = vec4<f32>(d.y);
        let w0 = vec4<f32>(pw_weight[c]);
        a0 = fma(w0, d0, a0);
        b0 = fma(w0, d1, b0);
        if OUT4 > 1u {
            let w1 = vec4<f32>(pw_weight[1u * p.c_mid + c]);
            a1 = fma(w1, d0, a1);
            b1 = fma(w1, d1, b1);
        }
        if OUT4 > 2u {
            let w2 = vec4<f32>(pw_weight[2u * p.c_mid + c]);
            a2 = fma(w2, d0, a2);
            b2 = fma(w2, d1, b2);
        }
        if OUT4 > 3u {
            let w3 = vec4<f32>(pw_weight[3u * p.c_mid + c]);
            a3 = fma(w3, d0, a3);
            b3 = fma(w3, d1, b3);
        }
        if OUT4 > 4u {
            let w4 = vec4<f32>(pw_weight[4u * p.c_mid + c]);
            a4 = fma(w4, d0, a4);
            b4 = fma(w4, d1, b4);
        }
        if OUT4 > 5u {
            let w5 = vec4<f32>(pw_weight[5u * p.c_mid + c]);
            a5 = fma(w5, d0, a5);
            b5 = fma(w5, d1, b5);
        }
        if OUT4 > 6u {
            let w6 = vec4<f32>(pw_weight[6u * p.c_mid + c]);
            a6 = fma(w6, d0, a6);
            b6 = fma(w6, d1, b6);
        }
        if OUT4 > 7u {
            let w7 = vec4<f32>(pw_weight[7u * p.c_mid + c]);
            a7 = fma(w7, d0, a7);
            b7 = fma(w7, d1, b7);
        }
    }
    if a.ok {
        store_pixel(q0, array(a0, a1, a2, a3, a4, a5, a6, a7));
    }
    if b.ok {
        store_pixel(q1, array(b0, b1, b2, b3, b4, b5, b6, b7));
    }
}
