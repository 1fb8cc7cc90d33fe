"""The systematic pipeline: notebook steps, provenance, campaigns on dask (local or SLURM)."""
