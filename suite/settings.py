"""Compose the suite config from `sweeps/conf` + command-line overrides, outside `@hydra.main`.

Every `suite` command that reads the suite (plan, prepare, train, sweep) goes through
`load_suite`, so every command validates the same way and fails with the same messages.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from suite.config import SuiteConfig
from suite.errors import ConfigError, SuiteError


def compose_suite(overrides: list[str]) -> DictConfig:
    """The composed (unvalidated) DictConfig, Hydra's own overrides grammar included."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import sweeps

    sweeps.register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(sweeps.CONFIG_MODULE, version_base=None):
            return compose(sweeps.PRIMARY_CONFIG, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise SuiteError(f"invalid override in {' '.join(overrides) or '(none)'}: {err}") from None


def to_suite(cfg: DictConfig) -> SuiteConfig:
    """Validate a composed config into the typed `SuiteConfig` (runs every __post_init__ check)."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except OmegaConfBaseException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise SuiteError(f"invalid suite config: {err}") from None


def load_suite(overrides: list[str] | None = None) -> SuiteConfig:
    return to_suite(compose_suite(overrides or []))
