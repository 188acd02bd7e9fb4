//! softmax kernels (shaders/softmax.wgsl).
