"""Wanda (Sun et al., ICLR 2024, "A Simple and Effective Pruning Approach for Large Language
Models"): score each weight by |W_ij| · ‖X_j‖₂, its magnitude times the norm of its input feature over
the calibration tokens, and prune the lowest scores of every output row (or of every group of M
along the input, N:M). A pure mask over the base weights: a ticket, at the cost of one calibration
pass. `score.py` holds the score and the per-row comparison, `prune.py` the method, `register.py` its
registration (`ticketlab prune wanda`)."""
