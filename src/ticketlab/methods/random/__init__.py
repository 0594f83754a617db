"""Random pruning, `ticketlab prune random` (TAMT's "Rand" baseline): `prune.py` is the method,
`register.py` its registration."""
