// Filled in by the elementwise kernel family.
