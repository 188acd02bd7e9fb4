// Zero padding of an NCHW map into a larger one, one thread per output element: the input sits at (top, left).

struct Params {
    planes: u32, h: u32, w: u32, out_h: u32,
    out_w: u32, top: u32, left: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<elem>;
@group(0) @binding(2) var<storage, read> input: array<elem>;

@compute @workgroup_size(WG)
fn pad_like(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, nwg, lid);
    let plane = p.out_h * p.out_w;
    if i >= p.planes * plane {
        return;
    }
    let y = i32((i % plane) / p.out_w) - i32(p.top);
    let x = i32(i % p.out_w) - i32(p.left);
    let inside = y >= 0 && y < i32(p.h) && x >= 0 && x < i32(p.w);
    let src = select(0u, ((i / plane) * p.h + u32(y)) * p.w + u32(x), inside);
    output[i] = select(elem(0.0), input[src], inside);
}
