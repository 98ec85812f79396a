"""``python -m resonate_cli`` is ``resonate``."""

from resonate_cli.main import app

app(prog_name="resonate")
