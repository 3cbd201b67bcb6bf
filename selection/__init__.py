"""Which unlabeled images are farthest from the training set: images -> features -> PCA ->
distances -> ranking. Pure numpy/torch; no HTTP, no Label Studio."""
