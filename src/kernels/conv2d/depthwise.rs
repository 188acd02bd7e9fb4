//! Depthwise convolution specialised by kernel size, stride and dilation (shaders/conv2d_depthwise.wgsl, generated
//! by scripts/gen-conv2d-tiled.py): MobileNetV3's 3x3 and 5x5 convs, strides 1 and 2, and its dilated last stage.
//! Each thread computes [`ROWS`] x 4 outputs of one channel (x 8 for the dilated kernels, whose spans reach
//! further) from input row spans loaded once, where the general depthwise kernel (shaders/conv2d_direct.wgsl)
//! loads each input once per tap. Same parameters, weights and bindings as the general kernel, which
//! [`super::direct`] runs for every other shape; [`super::Path::Depthwise`] is either.

use crate::ops::Conv2d;

/// Output rows per thread (by 4 columns, or 8 for the dilated kernels).
pub const ROWS: usize = 4;

/// The entry point `depthwise_k{K}s{S}d{D}` for depthwise `p` (square kernel K of 3 or 5, stride S, dilation D: 3
/// and 5 with stride 1 or 2, 3 and 5 with dilation 2; any padding) and the output tile one thread computes, rows x
/// columns; `None` where none is compiled.
pub(super) fn specialised(p: &Conv2d) -> Option<(&'static str, usize, usize)> {
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let [dh, dw] = p.dilation;
    if kh != kw || sh != sw || dh != dw || !p.is_depthwise() {
        return None;
    }
    let (entry, columns) = match (kh, sh, dh) {
        (3, 1, 1) => ("depthwise_k3s1d1", 4),
        (3, 2, 1) => ("depthwise_k3s2d1", 4),
        (5, 1, 1) => ("depthwise_k5s1d1", 4),
        (5, 2, 1) => ("depthwise_k5s2d1", 4),
        (3, 1, 2) => ("depthwise_k3s1d2", 8),
        (5, 1, 2) => ("depthwise_k5s1d2", 8),
        _ => return None,
    };
    Some((entry, ROWS, columns))
}
