#!python
"""The portpatrol command, and `python -m portpatrol`.

pyproject.toml installs this file as the command, a wheel script whose `#!python` line the
installer points at the environment's interpreter, instead of a [project.scripts] entry point:
pip's generated wrapper runs `import re` first, about 5 ms, a third of the start-up budget of
issue 5 (docs/performance.md)."""

from portpatrol.cli import run

run()
