"""The ``delaykit`` command line: a Click group that front-end commands hang off.

Keep this module light: torch, the models and gradio are imported inside the commands that need them, so
``delaykit --help`` answers at once. Commands print data on stdout and logs on stderr; a
:class:`~delaykit.errors.DelaykitError` raised anywhere below becomes ``Error: <message>`` and exit status 1,
without a traceback.
"""

from __future__ import annotations

import json

import click

from . import __version__
from .errors import DelaykitError


class DelaykitGroup(click.Group):
    """A Click group that reports DelaykitError as a one-line error instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DelaykitError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=DelaykitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="delaykit")
def main() -> None:
    """delaykit: streaming speech-to-text, text-to-speech and dialogue with one multi-stream model."""


@main.command()
@click.argument("checkpoint", default="default")
def inspect(checkpoint: str) -> None:
    """Show the files and configuration of CHECKPOINT (a directory, a hub repo id, or "default")."""
    from .checkpoints import resolve_checkpoint

    files = resolve_checkpoint(checkpoint)
    click.echo(json.dumps(files.describe(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
