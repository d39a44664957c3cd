"""``docs``: build the documentation site from a checkout and serve it on loopback.

The site's sources (``docs/``) live in the repository, not in the installed package, and Sphinx
comes with the dev extra: both are checked first, each with a one-line error.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from .context import err

#: The checkout an editable install runs from: ``<checkout>/coditect_tasks/cli/docs.py``.
CHECKOUT = Path(__file__).resolve().parents[2]


def build(source: Path, output: Path) -> None:
    """``sphinx-build -W --keep-going -n``: a warning (a broken reference, a missing name) fails it."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        raise ConfigError("docs", "Sphinx is not installed: pip install -e '.[dev]'") from None
    if not (source / "conf.py").is_file():
        raise ConfigError("--source", f"{source} has no conf.py: run from a checkout of coditect-tasks")
    code = build_main(["-W", "--keep-going", "-n", "-q", "-b", "html", str(source), str(output)])
    if code != 0:
        raise ConfigError("docs", f"sphinx-build failed (exit {code}): the warnings above say why")


def serve(directory: Path, port: int) -> None:
    """Serve ``directory`` on 127.0.0.1 only (nothing else may reach it) until Ctrl-C."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        err.print(f"serving the docs at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
        server.serve_forever()  # Ctrl-C ends it: the CLI's exit code 130


def docs(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free one).")] = 8000,
    source: Annotated[Path | None, typer.Option(help="The site's sources (default: docs/ of this checkout).")] = None,
    output: Annotated[Path | None, typer.Option(help="Where the HTML goes (default: docs/_build/html).")] = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Build only.")] = False,
) -> None:
    """Build the documentation site (failing on any warning) and serve it on 127.0.0.1."""
    source = source or CHECKOUT / "docs"
    output = output or source / "_build" / "html"
    build(source, output)
    err.print(f"built {output}")
    if not no_serve:
        serve(output, port)
