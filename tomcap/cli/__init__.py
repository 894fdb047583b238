"""The ``tomcap`` command line. ``main(argv)`` is the testable entry point."""
from .main import main

__all__ = ["main"]
