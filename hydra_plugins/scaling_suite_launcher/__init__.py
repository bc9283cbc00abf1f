"""Hydra discovers launchers only under the `hydra_plugins` namespace package: this module
registers `suite.launch.hydra_launcher.PerRunSlurmLauncher` as `hydra/launcher=slurm`."""

from suite.launch.hydra_launcher import PerRunSlurmLauncher as _PerRunSlurmLauncher


class PerRunSlurmLauncher(_PerRunSlurmLauncher):
    """Registered with Hydra as hydra/launcher=slurm (sweeps/conf/hydra/launcher/slurm.yaml)."""
