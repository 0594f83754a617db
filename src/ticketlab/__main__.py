"""`python -m ticketlab ...` is `ticketlab ...` (handy where the console script is not on PATH)."""

from .cli import main

raise SystemExit(main())
