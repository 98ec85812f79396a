"""Write the shell completion scripts for ``resonate`` (bash, zsh, fish) beside this file.

    python completions/generate.py           # rewrite them
    python completions/generate.py --check   # exit 1 if a checked-in script differs (the test runs this)

The scripts come from Typer, the same text ``resonate --install-completion`` installs: they call back
into ``resonate`` (with ``_RESONATE_COMPLETE`` set), so commands, flags and promise ids complete from
the installed app, and the ids from the daemon or the database.
"""

from __future__ import annotations

import os
import sys

from typer._completion_shared import get_completion_script

SHELLS = {"bash": "resonate.bash", "zsh": "_resonate", "fish": "resonate.fish"}
HERE = os.path.dirname(os.path.abspath(__file__))


def scripts() -> dict[str, str]:
    return {name: get_completion_script(prog_name="resonate", complete_var="_RESONATE_COMPLETE", shell=shell)
            .rstrip("\n") + "\n" for shell, name in SHELLS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in scripts().items():
        path = os.path.join(HERE, name)
        try:
            with open(path) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current == text:
            continue
        stale.append(name)
        if not check:
            with open(path, "w") as f:
                f.write(text)
    if check and stale:
        print(f"stale completion scripts: {', '.join(stale)}; run python completions/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
