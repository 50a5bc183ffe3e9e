"""Running bundles in scale-out engines (Ray Serve here; Triton reads the repository written by
`fabricad export --format triton`). The service reaches them through `fabricad.inference.remote`."""
