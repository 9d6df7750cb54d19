"""Clusters: the SLURM batch-job writer (`khop slurm`) and the launcher that runs inside the job."""
