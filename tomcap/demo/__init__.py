"""The offline demo: TOMCap vs its ablations vs the paired oracle on the embedded world."""
from .attributes import attribute_accuracy
from .config import DemoConfig
from .report import DemoReportConfig, run_demo_report
from .variants import VARIANTS, demo_variants
from .wiring import demo_pipeline_config

__all__ = ["VARIANTS", "DemoConfig", "DemoReportConfig", "attribute_accuracy", "demo_pipeline_config",
           "demo_variants", "run_demo_report"]
