"""The command-line door: ``segindex <command>``.

Each module in ``COMMAND_MODULES`` defines ``COMMANDS`` (click commands); they are added to the
``segindex`` group here. Modules import their heavy dependencies inside the commands, so
``segindex --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings

import click

COMMAND_MODULES = [
    "segindex.cli.core",
    "segindex.cli.search",
    "segindex.cli.serve",
    "segindex.cli.maintenance",
    "segindex.cli.eval",
    "segindex.cli.segment",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segindex")
@click.option("-v", "--verbose", is_flag=True, help="Show library logs and model-loading output.")
def main(verbose: bool) -> None:
    """Object-level search for image collections: index regions, then find them by text or image."""
    if not verbose:
        # Our own errors are printed as one line by the commands; keep third-party log lines
        # (libraries set their loggers' own levels, so the root level alone does not silence
        # them), Python warnings and model-loading progress bars (transformers, huggingface_hub,
        # open_clip) off the terminal.
        logging.disable(logging.ERROR)
        logging.getLogger().setLevel(logging.CRITICAL)
        warnings.simplefilter("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    else:
        logging.disable(logging.NOTSET)


for _module in COMMAND_MODULES:
    for _command in importlib.import_module(_module).COMMANDS:
        main.add_command(_command)
