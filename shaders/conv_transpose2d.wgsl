// Filled in by the conv_transpose2d kernel family.
