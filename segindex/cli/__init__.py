"""The command-line door: ``segindex <command>``.

Each module in ``COMMAND_MODULES`` defines ``COMMANDS`` (click commands); they are added to the
``segindex`` group here. Modules import their heavy dependencies inside the commands, so
``segindex --help`` stays fast.
"""

from __future__ import annotations

import importlib

import click

COMMAND_MODULES = [
    "segindex.cli.core",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segindex")
def main() -> None:
    """Object-level search for image collections: index regions, then find them by text or image."""


for _module in COMMAND_MODULES:
    for _command in importlib.import_module(_module).COMMANDS:
        main.add_command(_command)
