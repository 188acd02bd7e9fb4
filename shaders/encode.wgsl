// Encoding a class map or class probabilities as rows of texels for a copy into an application's texture or buffer
// (see src/ops/encode.rs). One thread per output word; words past a row's last texel are written as zero, so padded
// rows hold no stale bytes. Every entry binds its input at binding 2: each declares its own variable there, and
// only one is used per entry point.

struct Params {
    h: u32, w: u32, c: u32, row_words: u32,
    // Probability entries: `which` is the class whose probability is written. Colours: palette entries and BGRA order.
    which: u32, palette_len: u32, bgra: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> output: array<u32>;
@group(0) @binding(2) var<storage, read> classes: array<u32>;
@group(0) @binding(3) var<storage, read> palette: array<u32>;

// The output word of this thread as (row, word in row), or a row past the end.
fn word(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> vec2<u32> {
    let i = linear_id(wid, nwg, lid);
    return vec2<u32>(i / p.row_words, i % p.row_words);
}

fn class_at(y: u32, x: u32) -> u32 {
    return classes[y * p.w + x];
}

@compute @workgroup_size(WG)
fn classes_u8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = word(wid, nwg, lid);
    if at.x >= p.h {
        return;
    }
    var packed = 0u;
    for (var k = 0u; k < 4u; k++) {
        let x = 4u * at.y + k;
        if x < p.w {
            packed |= min(class_at(at.x, x), 255u) << (8u * k);
        }
    }
    output[at.x * p.row_words + at.y] = packed;
}

@compute @workgroup_size(WG)
fn classes_u32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = word(wid, nwg, lid);
    if at.x >= p.h {
        return;
    }
    var value = 0u;
    if at.y < p.w {
        value = class_at(at.x, at.y);
    }
    output[at.x * p.row_words + at.y] = value;
}

@compute @workgroup_size(WG)
fn colours(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let at = word(wid, nwg, lid);
    if at.x >= p.h {
        return;
    }
    var value = 0u;
    if at.y < p.w {
        // The palette holds 0xAABBGGRR (RGBA bytes in memory); BGRA swaps red and blue.
        let rgba = palette[class_at(at.x, at.y) % p.palette_len];
        let bgra = (rgba & 0xff00ff00u) | ((rgba & 0xffu) << 16u) | ((rgba >> 16u) & 0xffu);
        value = select(rgba, bgra, p.bgra != 0u);
    }
    output[at.x * p.row_words + at.y] = value;
}
