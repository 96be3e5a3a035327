"""What every command shares: how errors are shown and the exit codes (docs/cli.md, "Exit codes").

An error the user can fix (an OFASysError: instruction, config, data, checkpoint, plugin or training error, or
an OSError such as a missing file or a full disk) is one line on stderr. Anything else is a bug in ofasys_fs
or a plugin and shows its traceback. `--debug` or OFASYS_FS_DEBUG=1 shows the traceback of every error.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, Optional, Sequence

from ..errors import OFASysError
from ..registry import did_you_mean

EXIT_OK = 0
EXIT_USER_ERROR = 1  # bad input: data, config, instruction, checkpoint, plugin, a run that cannot go on
EXIT_USAGE = 2  # the command line itself (argparse's own code)
EXIT_INTERNAL = 3  # a bug: the traceback is printed
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
DEBUG_VARIABLE = "OFASYS_FS_DEBUG"


class CommandParser(argparse.ArgumentParser):
    """argparse for the commands: no abbreviated flags (`--lr-schedule` is not `--lr-scheduler`), and a usage
    error is two lines (what is wrong, with a did-you-mean for an unknown flag, and where the help is) instead of
    the full usage."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        unknown = message.partition("unrecognized arguments: ")[2].split()
        flags = [flag for flag in unknown if flag.startswith("--")]
        if flags:
            known = [option for action in self._actions for option in action.option_strings]
            message += "." + "".join(did_you_mean(flag.partition("=")[0], known) for flag in flags)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nrun `{self.prog} --help` for the options\n")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of every error, not only of bugs (also {DEBUG_VARIABLE}=1)")


def debugging(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_VARIABLE) == "1"


def one_line(err: BaseException) -> str:
    """An error's message as one printable line (a lone surrogate from an undecodable byte is escaped)."""
    text = err.one_line() if isinstance(err, OFASysError) else " ".join(str(err).split())
    return (text or type(err).__name__).encode("utf-8", "backslashreplace").decode("utf-8")


def run_command(prog: str, body: Callable[[], int], debug: bool = False) -> int:
    """Run a command's body and turn its outcome into an exit code."""
    try:
        return body()
    except (OFASysError, OSError) as err:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc()
        print(f"{prog}: internal error: this is a bug in ofasys_fs or a plugin, not in your input; the traceback "
              f"above shows where (please report it with the command line)", file=sys.stderr)
        return EXIT_INTERNAL


def entry_point(prog: str, build_parser: Callable[[], argparse.ArgumentParser],
                body: Callable[[argparse.Namespace], int], intermixed: bool = False) -> Callable[..., int]:
    """The `main(argv=None) -> exit code` of a command: parse the arguments, then run `body(args)`.
    `intermixed`: options may follow positional arguments (ofasys-train's CONFIG.yaml key=value ...)."""

    def main(argv: Optional[Sequence[str]] = None) -> int:
        parser = build_parser()
        args = (parser.parse_intermixed_args if intermixed else parser.parse_args)(argv)
        return run_command(prog, lambda: body(args), debugging(args))

    main.__doc__ = f"Entry point of `{prog}`; returns the exit code (docs/cli.md, \"Exit codes\")."
    return main
