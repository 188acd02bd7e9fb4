//! Reference resize.
