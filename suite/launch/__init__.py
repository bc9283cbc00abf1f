"""Launching runs: distributed environment inside a job, SLURM resources and sbatch scripts.

Submodules import lazily what they need (submitit only when rendering or submitting), so
importing ``suite.launch.env`` in a rank costs nothing.
"""
