"""`python -m nudge.cli`: the same as the `nudge` command."""

from nudge.cli import main

raise SystemExit(main())
