"""SparseGPT (Frantar & Alistarh, ICML 2023, "SparseGPT: Massive Language Models Can Be Accurately
Pruned in One-Shot"): for each matrix, the layer-wise optimal brain surgeon on the inverse Hessian
H = 2XXᵀ/n of its calibration inputs. Columns are visited in blocks of 128: inside a block the mask
is chosen by w²/[H⁻¹]_jj² (elementwise, adaptively per block; or N of every M), and every pruned
weight's error is spread over the columns not yet visited.

Two artefacts: the mask over the base weights θ0 (a ticket, comparable with the others) and the
reconstructed weights (a sparse model, not a ticket), written beside the mask
(`masks.reconstructed`; `ticketlab export --reconstructed`). `config.py` holds its settings,
`solver.py` the Hessian and the solver, `prune.py` the method, `register.py` its registration."""
