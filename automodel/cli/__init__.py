"""The command line (``python -m automodel``, ``automodel``): the commands (``commands``) and the
terminal's progress bars (``progress``)."""

from automodel.cli.commands import main

__all__ = ["main"]
