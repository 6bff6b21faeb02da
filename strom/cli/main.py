"""The ``strom`` command: one sub-command per module, each exposing ``add_arguments`` and ``run``.

The broker (``serve``) is imported only when it is the command being run, so the client commands start
quickly and keep working without the server's dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from strom import __version__
from strom.cli.errors import CliError

# Sub-command name -> (module, one-line help); a module is imported only when its command runs.
COMMANDS = {
    "serve": ("strom.cli.serve", "run a broker in the foreground"),
    "topics": ("strom.cli.topics", "create, list, describe, alter and delete topics"),
    "produce": ("strom.cli.produce", "send lines from stdin or a file as messages"),
    "consume": ("strom.cli.consume", "print messages of a topic"),
    "groups": ("strom.cli.groups", "list, describe, reset offsets of and delete consumer groups"),
    "transactions": ("strom.cli.transactions", "list and describe transactional ids"),
    "producers": ("strom.cli.producers", "show the active producers of a topic's partitions"),
    "dlt": ("strom.cli.dlt", "list, show and replay the records of dead-letter topics"),
    "console": ("strom.cli.console", "serve the web console for a cluster"),
}
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``strom`` command line; returns the process exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(arguments))
    args = parser.parse_args(arguments)
    try:
        status: int = args.command_module.run(args)
        return status
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): silence the final flush of stdout, exit as a SIGPIPE'd tool.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only the named sub-command's module is imported (all of them for ``None``)."""
    parser = argparse.ArgumentParser(
        prog="strom", description="Strom: a Kafka-compatible event-streaming platform."
    )
    parser.add_argument("--version", action="version", version=f"strom {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        if command is None or name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(command_module=module)
    return parser


def _chosen_command(arguments: Sequence[str]) -> str | None:
    """The sub-command named on the command line, if any (options never precede it)."""
    for argument in arguments:
        if not argument.startswith("-"):
            return argument if argument in COMMANDS else None
    return None


if __name__ == "__main__":
    sys.exit(main())
