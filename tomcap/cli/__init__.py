"""The library's commands (no Prefect): ``tomcap.cli.main.main(argv)`` is the testable entry point;
the installed ``tomcap`` (``tomcap_cli``) adds the commands that orchestrate with Prefect."""
