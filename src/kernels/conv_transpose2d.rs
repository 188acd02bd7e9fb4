//! conv_transpose2d kernels (shaders/conv_transpose2d.wgsl).
