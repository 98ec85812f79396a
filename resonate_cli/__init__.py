"""The ``resonate`` command line (Typer + rich): a thin layer over ``resonate`` and ``resonate_daemon``."""
