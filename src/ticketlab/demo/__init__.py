"""The demo: `ticketlab demo` end to end on synthetic data (`pipeline`); its budgets (`config`)."""
