// Elementwise ops over NCHW float tensors (`elem` in storage, f32 arithmetic), one thread per output element:
// - binary: act(a op b) with NumPy broadcasting (each dim of a and b equals the output's or is 1),
// - activation: a standalone activation,
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

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let total = bp.n * bp.c * bp.h * bp.w;
    if i >= total {
        return;
    }
    let x = i % bp.w;
    let y = (i / bp.w) % bp.h;
    let c = (i / (bp.w * bp.h)) % bp.c;
    let n = i / (bp.w * bp.h * bp.c);
    let at = vec4<u32>(n, c, y, x);
    let a = f32(binary_a[broadcast_index(vec4<u32>(bp.a_n, bp.a_c, bp.a_h, bp.a_w), at)]);
    let b = f32(binary_b[broadcast_index(vec4<u32>(bp.b_n, bp.b_c, bp.b_h, bp.b_w), at)]);
    // Codes of `BinaryOp::code`.
    var v: f32;
    switch bp.op {
        case 1u: { v = a * b; }
        default: { v = a + b; }
    }
    binary_out[i] = elem(activate(v, bp.activation));
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

struct CopyParams {
    n: u32, c: u32, plane: u32, dest_c: u32, offset: u32,
}

@group(0) @binding(0) var<uniform> cp: CopyParams;
@group(0) @binding(1) var<storage, read_write> copy_out: array<elem>;
@group(0) @binding(2) var<storage, read> copy_in: array<elem>;

@compute @workgroup_size(WG)
fn copy_channels(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let per_batch = cp.c * cp.plane;
    if i >= cp.n * per_batch {
        return;
    }
    let b = i / per_batch;
    // Channel and position within the batch item are contiguous in both tensors.
    copy_out[(b * cp.dest_c + cp.offset) * cp.plane + i % per_batch] = copy_in[i];
}
