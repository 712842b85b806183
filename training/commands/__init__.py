"""One module per ``l2gnet`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``."""


def batch_size_arg(text: str) -> int | str:
    """argparse type for --batch-size: a positive integer or ``auto``."""
    import argparse

    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type for rates and weights that must be a finite number above 0 (``--lr``):
    ``nan``, ``inf`` or 0 are refused at parse, before a run folder is made."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text!r}")
    return value
