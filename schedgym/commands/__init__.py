"""Subcommands of the schedgym CLI, one module per group; each exposes register(subparsers)."""
