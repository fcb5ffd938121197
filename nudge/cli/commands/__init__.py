"""One module per `nudge` subcommand: `register(subparsers)` and `run(args)`."""
