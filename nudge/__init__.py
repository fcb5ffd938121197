"""nudge: the command line and the testing harness around the core packages."""
