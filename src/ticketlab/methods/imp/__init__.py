"""IMP: iterative magnitude pruning with rewinding (Chen et al. 2020), `ticketlab search imp`.
`search.py` is the search (its variants explained there), `register.py` its registration. Light:
the registry imports `register.py` for `--help`."""
