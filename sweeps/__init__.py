"""The Hydra config tree of scaling-suite: the sweep is data.

`conf/config.yaml` is the primary config; `conf/suite/*.yaml` are the suites (`suite=pythia`,
`suite=mini`), each validated against the typed schema `suite.config.SuiteConfig`, which is
registered here in Hydra's ConfigStore as `suite_schema`.
"""

from __future__ import annotations

CONFIG_MODULE = "sweeps.conf"
PRIMARY_CONFIG = "config"


def register_schema() -> None:
    """Register the structured schema (idempotent; Hydra needs it before composing)."""
    from hydra.core.config_store import ConfigStore

    from suite.config import SuiteConfig

    ConfigStore.instance().store(name="suite_schema", node=SuiteConfig)
