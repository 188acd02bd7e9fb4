// Filled in by the preprocess kernel family.
