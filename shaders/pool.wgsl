// Filled in by the pool kernel family.
