"""``l2gnet``: train, evaluate, predict and make sample data from the shell (no Qt).

Each subcommand lives in ``training/commands/<name>.py`` with ``add_parser`` and ``run``.
Errors a user can fix (bad paths, unreadable files, checkpoints that do not fit the data, an
unknown device or config key, a full or read-only disk, too little memory) are printed as one
clear line and exit with status 2; nothing else is hidden.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from src_model import CheckpointError

from .commands import evaluate, finetune, measure, predict, sample, train
from .commands.outputs import describe

COMMANDS = (train, finetune, evaluate, predict, measure, sample)


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what was asked, for the checkpoint's record (not pytest's sys.argv)
    try:
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
    except MemoryError:
        print(f"l2gnet {args.command}: error: not enough memory (a scan or setting larger than "
              "this machine holds): use a smaller --batch-size, a smaller scan, or a machine "
              "with more memory", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
