// Elementwise ops over NCHW float tensors (`elem` in storage, f32 arithmetic), one thread per output element (binary:
// per run of a row's elements; copy_channels: per run of a batch item's):
// - binary: act(a op b) with NumPy broadcasting (each dim of a and b equals the output's or is 1),
// - activation: a standalone activation,
// - pointwise: an elementwise function with up to two f32 parameters (`Pointwise` on the host),
// - copy_channels: one input of a concatenation copied into its channel range of the destination.
// Each entry point has globals of its own; they share binding numbers, which is fine since a pipeline (auto
// layout) only sees the globals its entry point uses.

struct BinaryParams {
    a_n: u32, a_c: u32, a_h: u32, a_w: u32,
    b_n: u32, b_c: u32, b_h: u32, b_w: u32,
    n: u32, c: u32, h: u32, w: u32,
    op: u32, activation: u32,
}

@group(0) @binding(0) var<uniform> bp: BinaryParams;
@group(0) @binding(1) var<storage, read_write> binary_out: array<elem>;
@group(0) @binding(2) var<storage, read> binary_a: array<elem>;
@group(0) @binding(3) var<storage, read> binary_b: array<elem>;

// Index into a tensor of dims `d` = (n, c, h, w) broadcast to the output position `at`: size-1 dims get stride 0.
fn broadcast_index(d: vec4<u32>, at: vec4<u32>) -> u32 {
    let stride_w = select(1u, 0u, d.w == 1u);
    let stride_h = select(d.w, 0u, d.z == 1u);
    let stride_c = select(d.z * d.w, 0u, d.y == 1u);
    let stride_n = select(d.y * d.z * d.w, 0u, d.x == 1u);
    return at.x * stride_n + at.y * stride_c + at.z * stride_h + at.w * stride_w;
}

// One thread per run of up to RUN consecutive outputs of a row: the position is decomposed (four integer
// divisions, which a CPU adapter's SIMD lanes do one by one) once per run, not once per element.
const RUN: u32 = 4u;

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = linear_id(wid, nwg, lid);
    let runs = (bp.w + RUN - 1u) / RUN;
    let row = t / runs;
    if row >= bp.n * bp.c * bp.h {
        return;
    }
    let x0 = (t - row * runs) * RUN;
    let y = row % bp.h;
    let c = (row / bp.h) % bp.c;
    let n = row / (bp.h * bp.c);
    let at = vec4<u32>(n, c, y, x0);
    let a_dims = vec4<u32>(bp.a_n, bp.a_c, bp.a_h, bp.a_w);
    let b_dims = vec4<u32>(bp.b_n, bp.b_c, bp.b_h, bp.b_w);
    let a0 = broadcast_index(a_dims, at);
    let b0 = broadcast_index(b_dims, at);
    let a_step = select(1u, 0u, bp.a_w == 1u);
    let b_step = select(1u, 0u, bp.b_w == 1u);
    let out0 = row * bp.w + x0;
    for (var k = 0u; k < RUN && x0 + k < bp.w; k++) {
        let a = f32(binary_a[a0 + k * a_step]);
        let b = f32(binary_b[b0 + k * b_step]);
        // Codes of `BinaryOp::code`.
        var v: f32;
        switch bp.op {
            case 1u: { v = a * b; }
            case 2u: { v = a - b; }
            case 3u: { v = a / b; }
            // PRelu: b is the slope.
            case 4u: { v = select(a * b, a, a >= 0.0); }
            default: { v = a + b; }
        }
        binary_out[out0 + k] = elem(activate(v, bp.activation));
    }
}

struct ActivationParams {
    total: u32, activation: u32,
}

@group(0) @binding(0) var<uniform> ap: ActivationParams;
@group(0) @binding(1) var<storage, read_write> activation_out: array<elem>;
@group(0) @binding(2) var<storage, read> activation_in: array<elem>;

@compute @workgroup_size(WG)
fn activation(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= ap.total {
        return;
    }
    activation_out[i] = elem(activate(f32(activation_in[i]), ap.activation));
}

struct PointwiseParams {
    total: u32, function: u32, p0: f32, p1: f32,
}

@group(0) @binding(0) var<uniform> pp: PointwiseParams;
@group(0) @binding(1) var<storage, read_write> pointwise_out: array<elem>;
@group(0) @binding(2) var<storage, read> pointwise_in: array<elem>;

// erfc(z) to 1.2e-7 relative everywhere (Numerical Recipes' erfcc, a Chebyshev fit): relative, so the tail of
// GELU at large negative x keeps its digits.
fn erfc_approx(z: f32) -> f32 {
    let a = abs(z);
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(poly);
    return select(2.0 - r, r, z >= 0.0);
}

// exp(x) - 1 without the cancellation near 0 (series below 1e-2, where its first omitted term is 4e-10 relative).
fn expm1_approx(x: f32) -> f32 {
    return select(exp(x) - 1.0, x * (1.0 + x * (0.5 + x * (1.0 / 6.0))), abs(x) < 1e-2);
}

// Function codes of `Pointwise::code` on the host; p0 and p1 are `Pointwise::params`.
fn pointwise_fn(x: f32, function: u32, p0: f32, p1: f32) -> f32 {
    switch function {
        case 0u: { return select(p0 * x, x, x >= 0.0); }
        // Clip as min(max(x, lo), hi); NaN stays NaN, tested on its bits (compilers may assume no NaN in
        // comparisons: GL's does).
        case 1u: {
            let clipped = min(max(x, p0), p1);
            return select(clipped, x, (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u);
        }
        case 2u: { return select(p0 * expm1_approx(x), x, x > 0.0); }
        case 3u: { return clamp(p0 * x + p1, 0.0, 1.0); }
        // tanh is +-1 in f32 beyond 9.1; the clamp keeps implementations that divide exponentials from inf / inf.
        case 4u: { return tanh(clamp(x, -15.0, 15.0)); }
        // ln(1 + exp(x)) = max(x, 0) + ln(1 + exp(-|x|)): no overflow.
        case 5u: { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
        // 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2).
        case 6u: { return 0.5 * x * erfc_approx(-x * 0.70710678118654752); }
        // 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2 / pi) (x + 0.044715 x^3): no tanh, no cancellation.
        case 7u: {
            let u = 0.79788456080286536 * (x + 0.044715 * x * x * x);
            return x / (1.0 + exp(-2.0 * u));
        }
        case 8u: { return exp(x); }
        case 9u: { return log(x); }
        case 10u: { return sqrt(x); }
        case 11u: { return abs(x); }
        case 12u: { return -x; }
        case 13u: { return 1.0 / x; }
        case 14u: { return floor(x); }
        case 15u: { return ceil(x); }
        default: { return x; }
    }
}

@compute @workgroup_size(WG)
fn pointwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= pp.total {
        return;
    }
    pointwise_out[i] = elem(pointwise_fn(f32(pointwise_in[i]), pp.function, pp.p0, pp.p1));
}

struct CopyParams {
    n: u32, c: u32, plane: u32, dest_c: u32, offset: u32,
}

@group(0) @binding(0) var<uniform> cp: CopyParams;
@group(0) @binding(1) var<storage, read_write> copy_out: array<elem>;
@group(0) @binding(2) var<storage, read> copy_in: array<elem>;

@compute @workgroup_size(WG)
fn copy_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    // One thread per run of RUN elements of a batch item, whose channels and positions are contiguous in both
    // tensors: the division by the item's size once per run.
    let t = linear_id(wid, nwg, lid);
    let per_batch = cp.c * cp.plane;
    let runs = (per_batch + RUN - 1u) / RUN;
    if t >= cp.n * runs {
        return;
    }
    let b = t / runs;
    let r0 = (t - b * runs) * RUN;
    let src = b * per_batch + r0;
    let dst = (b * cp.dest_c + cp.offset) * cp.plane + r0;
    for (var k = 0u; k < RUN && r0 + k < per_batch; k++) {
        copy_out[dst + k] = copy_in[src + k];
    }
}
