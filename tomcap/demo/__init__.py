"""The offline demo: TOMCap vs its ablations vs the paired oracle on the embedded world.

``tomcap.demo.variants`` and ``tomcap.demo.wiring`` work on whole pipeline configs; import them from
there (``tomcap.settings`` imports this package for ``DemoConfig``, so it cannot import them here).
"""
from .attributes import attribute_accuracy
from .config import FULL, VARIANTS, DemoConfig
from .report import DemoReportConfig, run_demo_report

__all__ = ["FULL", "VARIANTS", "DemoConfig", "DemoReportConfig", "attribute_accuracy", "run_demo_report"]
