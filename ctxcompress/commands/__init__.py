"""CLI subcommands of the core library (each: ``configure(parser)`` and ``run(args)``)."""
