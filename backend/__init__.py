"""Label Studio ML backend: HTTP app, Label Studio client and background jobs."""
