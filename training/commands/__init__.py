"""One module per ``l2gnet`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``."""
