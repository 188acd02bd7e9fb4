//! preprocess kernels (shaders/preprocess.wgsl).
