"""`python -m ticketlab ...` is `ticketlab ...` (handy where the console script is not on PATH)."""

from .cli import main

if __name__ == "__main__":  # importing this module (a walk over the package) runs nothing
    raise SystemExit(main())
