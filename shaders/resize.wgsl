// Filled in by the resize kernel family.
