"""The installed ``tomcap`` command (``tomcap_cli.main``): the library's commands (``tomcap.cli``) plus
those that orchestrate with Prefect (``pipeline``, ``demo``, ``watch``, ``corpus --emit-event``).

It lives outside ``tomcap/`` so that the library never imports Prefect, ``tasks/`` or ``flows/``.
"""
