"""``l2gnet``: train, evaluate, predict and make sample data from the shell (no Qt).

Each subcommand lives in ``training/commands/<name>.py`` with ``add_parser`` and ``run``.
Errors a user can fix (bad paths, unreadable files, checkpoints that do not fit the data, an
unknown device or config key, a full or read-only disk, too little memory) are printed as one
clear line and exit with status 2; nothing else is hidden.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence

from src_model import CheckpointError

from .commands import evaluate, finetune, measure, next_slices, predict, sample, train
from .commands.outputs import check_symlink_loops, describe
from .inference.predict import is_cpu_out_of_memory

COMMANDS = (train, finetune, next_slices, evaluate, predict, measure, sample)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l2gnet",
        description="L2GNet medical image segmentation: train, evaluate, predict, measure, "
        "sample data.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


@contextlib.contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Print each warning as ``l2gnet COMMAND: warning: MESSAGE`` (one line, no source line),
    as errors are printed; Python's default adds the file, line and code of the warning."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"l2gnet {command}: warning: {text}", file=file or sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _memory_message(args: argparse.Namespace, err: BaseException) -> str:
    detail = str(err) if isinstance(err, MemoryError) and str(err) else ""
    batch = getattr(args, "batch_size", None)
    if "batch size 1" in detail:  # the batch was already halved down to one slice
        fix = "use a smaller scan or a machine with more memory"
    elif isinstance(batch, int) and batch > 1:
        fix = (f"use a smaller batch (e.g. --batch-size {batch // 2}), a smaller input size, "
               "or a machine with more memory")
    else:
        fix = "use a smaller --batch-size or input size, or a machine with more memory"
    return f"not enough memory{f' ({detail})' if detail else ''}: {fix}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what was asked, for the checkpoint's record (not pytest's sys.argv)
    try:
        with one_line_warnings(args.command):
            check_symlink_loops(args)
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("l2gnet: interrupted", file=sys.stderr)
        return 130
    except (CheckpointError, ValueError) as err:
        print(f"l2gnet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # ours carry a message; the system's an errno (disk full, EROFS...)
        message = describe(err) if err.errno is not None else str(err)
        print(f"l2gnet {args.command}: error: {message}", file=sys.stderr)
        return 2
    except MemoryError as err:
        print(f"l2gnet {args.command}: error: {_memory_message(args, err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if not is_cpu_out_of_memory(err):
            raise
        print(f"l2gnet {args.command}: error: {_memory_message(args, err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
