"""TAMT: task-agnostic mask training (Liu et al. 2022), `ticketlab search tamt`. `search.py` is the
search (its setup and run), `scores.py` the scores and `masked_layers.py` the layers that compute
with W ⊙ 1[S ≥ φ], `thresholds.py` (with `band.py`) the exact re-threshold after every step,
`register.py` its registration. Light: the registry imports `register.py` for `--help`."""
