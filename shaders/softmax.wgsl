// Filled in by the softmax kernel family.
