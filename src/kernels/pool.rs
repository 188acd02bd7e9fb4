//! pool kernels (shaders/pool.wgsl).
