// Pooling in NCHW, exactly as PyTorch's CPU kernels: max_pool2d (optionally with the flat h*w index of each maximum),
// avg_pool2d, adaptive_avg_pool2d, and max_unpool2d as a zero fill followed by a scatter.
// One thread per output element (per input element for the scatter). Values are `elem` in storage; comparisons and
// sums run in f32.
//
// Every entry point shares the uniform `p`; each declares its own storage globals, bound after it in the order
// outputs then inputs, so an auto layout sees exactly the bindings its Kernel declares.

struct Params {
    n: u32, c: u32, h_in: u32, w_in: u32,
    h_out: u32, w_out: u32, k_h: u32, k_w: u32,
    stride_h: u32, stride_w: u32, pad_h: u32, pad_w: u32,
    dil_h: u32, dil_w: u32, count_include_pad: u32,
    // Threads that do work: output elements, or input elements for the scatter.
    total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// max_pool2d
@group(0) @binding(1) var<storage, read_write> mp_output: array<elem>;
@group(0) @binding(2) var<storage, read> mp_input: array<elem>;

// max_pool2d_indices
@group(0) @binding(1) var<storage, read_write> mpi_output: array<elem>;
@group(0) @binding(2) var<storage, read_write> mpi_indices: array<u32>;
@group(0) @binding(3) var<storage, read> mpi_input: array<elem>;

// avg_pool2d
@group(0) @binding(1) var<storage, read_write> ap_output: array<elem>;
@group(0) @binding(2) var<storage, read> ap_input: array<elem>;

// adaptive_avg_pool2d
@group(0) @binding(1) var<storage, read_write> aap_output: array<elem>;
@group(0) @binding(2) var<storage, read> aap_input: array<elem>;

// max_unpool2d_zero
@group(0) @binding(1) var<storage, read_write> uz_output: array<elem>;

// max_unpool2d_scatter
@group(0) @binding(1) var<storage, read_write> us_output: array<elem>;
@group(0) @binding(2) var<storage, read> us_values: array<elem>;
@group(0) @binding(3) var<storage, read> us_indices: array<u32>;

// Position of output element `i`: x, y, and the flat (n, c) plane.
struct OutPos {
    x: u32,
    y: u32,
    plane: u32,
}

fn out_pos(i: u32) -> OutPos {
    return OutPos(i % p.w_out, (i / p.w_out) % p.h_out, i / (p.w_out * p.h_out));
}

// The taps of a dilated max window along one axis: the first in-bounds tap and the exclusive end, as PyTorch's
// cpu_max_pool computes them (start stepped forward by whole dilations out of the padding).
struct Taps {
    start: i32,
    end: i32,
}

fn max_taps(o: u32, stride: u32, pad: u32, k: u32, dil: u32, len: u32) -> Taps {
    var start = i32(o * stride) - i32(pad);
    let end = min(start + i32((k - 1u) * dil + 1u), i32(len));
    if start < 0 {
        // Whole dilations forward, as many as leave the padding (a loop would depend on dil > 0 to end).
        let d = i32(max(dil, 1u));
        start += ((d - 1 - start) / d) * d;
    }
    return Taps(start, end);
}

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// PyTorch's comparison: a strictly larger value or a NaN takes over, so ties keep the first in scan order.
// NaN is tested on the bits: drivers may fold `v != v` to false (lavapipe does).
fn takes_over(v: f32, best: f32) -> bool {
    return v > best || (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(WG)
fn max_pool2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.total {
        return;
    }
    let o = out_pos(i);
    let ty = max_taps(o.y, p.stride_h, p.pad_h, p.k_h, p.dil_h, p.h_in);
    let tx = max_taps(o.x, p.stride_w, p.pad_w, p.k_w, p.dil_w, p.w_in);
    let base = o.plane * p.h_in * p.w_in;
    var best = neg_inf();
    for (var y = ty.start; y < ty.end; y += i32(p.dil_h)) {
        let row = base + u32(y) * p.w_in;
        for (var x = tx.start; x < tx.end; x += i32(p.dil_w)) {
            let v = f32(mp_input[row + u32(x)]);
            if takes_over(v, best) {
                best = v;
            }
        }
    }
    mp_output[i] = elem(best);
}

@compute @workgroup_size(WG)
fn max_pool2d_indices(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.total {
        return;
    }
    let o = out_pos(i);
    let ty = max_taps(o.y, p.stride_h, p.pad_h, p.k_h, p.dil_h, p.h_in);
    let tx = max_taps(o.x, p.stride_w, p.pad_w, p.k_w, p.dil_w, p.w_in);
    let base = o.plane * p.h_in * p.w_in;
    var best = neg_inf();
    // PyTorch's initial index: the first tap, even if the window had no taps at all.
    var best_index = u32(ty.start) * p.w_in + u32(tx.start);
    for (var y = ty.start; y < ty.end; y += i32(p.dil_h)) {
        for (var x = tx.start; x < tx.end; x += i32(p.dil_w)) {
            let index = u32(y) * p.w_in + u32(x);
            let v = f32(mpi_input[base + index]);
            if takes_over(v, best) {
                best = v;
                best_index = index;
            }
        }
    }
    mpi_output[i] = elem(best);
    mpi_indices[i] = best_index;
}

@compute @workgroup_size(WG)
fn avg_pool2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.total {
        return;
    }
    let o = out_pos(i);
    // PyTorch's cpu_avg_pool: the count_include_pad divisor is the window clipped to input + padding (ceil-mode
    // windows may overhang it); the other divisor counts only the input elements.
    var y0 = i32(o.y * p.stride_h) - i32(p.pad_h);
    var x0 = i32(o.x * p.stride_w) - i32(p.pad_w);
    var y1 = min(y0 + i32(p.k_h), i32(p.h_in + p.pad_h));
    var x1 = min(x0 + i32(p.k_w), i32(p.w_in + p.pad_w));
    let padded_size = (y1 - y0) * (x1 - x0);
    y0 = max(y0, 0);
    x0 = max(x0, 0);
    y1 = min(y1, i32(p.h_in));
    x1 = min(x1, i32(p.w_in));
    if y0 >= y1 || x0 >= x1 {
        ap_output[i] = elem(0.0);
        return;
    }
    let base = o.plane * p.h_in * p.w_in;
    var sum = 0.0;
    for (var y = y0; y < y1; y++) {
        let row = base + u32(y) * p.w_in;
        for (var x = x0; x < x1; x++) {
            sum += f32(ap_input[row + u32(x)]);
        }
    }
    var divisor = (y1 - y0) * (x1 - x0);
    if p.count_include_pad != 0u {
        divisor = padded_size;
    }
    ap_output[i] = elem(sum / f32(divisor));
}

@compute @workgroup_size(WG)
fn adaptive_avg_pool2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.total {
        return;
    }
    let o = out_pos(i);
    // Bin [floor(o * in / out), ceil((o + 1) * in / out)), as AdaptiveAvgPool2d::bin on the host.
    let y0 = o.y * p.h_in / p.h_out;
    let y1 = ((o.y + 1u) * p.h_in + p.h_out - 1u) / p.h_out;
    let x0 = o.x * p.w_in / p.w_out;
    let x1 = ((o.x + 1u) * p.w_in + p.w_out - 1u) / p.w_out;
    let base = o.plane * p.h_in * p.w_in;
    var sum = 0.0;
    for (var y = y0; y < y1; y++) {
        let row = base + y * p.w_in;
        for (var x = x0; x < x1; x++) {
            sum += f32(aap_input[row + x]);
        }
    }
    aap_output[i] = elem(sum / f32((y1 - y0) * (x1 - x0)));
}

// First of the two max_unpool2d dispatches: every output element that no index names must be zero.
@compute @workgroup_size(WG)
fn max_unpool2d_zero(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.total {
        return;
    }
    uz_output[i] = elem(0.0);
}

// Second dispatch, one thread per pooled value: writes it at its index within its own output plane. Indices outside
// the plane are skipped (the host reference rejects them, as PyTorch does). When two values name the same position
// the survivor is unspecified; after max_pool2d they are copies of one input element, so it does not matter.
@compute @workgroup_size(WG)
fn max_unpool2d_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    if i >= p.total {
        return;
    }
    let plane = i / (p.h_in * p.w_in);
    let out_plane = p.h_out * p.w_out;
    let index = us_indices[i];
    if index >= out_plane {
        return;
    }
    us_output[plane * out_plane + index] = us_values[i];
}
