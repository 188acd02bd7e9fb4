//! Reference preprocess.
