//! elementwise kernels (shaders/elementwise.wgsl).
