"""Training: the loop, optimizers and schedules, batches, the run directory, masked AdamW."""
