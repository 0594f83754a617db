"""The verbs' configs and functions: the Python API (`ticketlab.prune`, `ticketlab.finetune`, ...)."""
