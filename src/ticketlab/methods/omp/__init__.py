"""OMP: one-shot magnitude pruning, `ticketlab prune omp` (TAMT §3.2, Chen et al.): `prune.py` is the
method (TAMT's and IMP's starting mask too), `register.py` its registration."""
