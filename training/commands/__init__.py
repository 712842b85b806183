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
