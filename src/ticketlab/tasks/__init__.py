"""Downstream tasks: the registry, GLUE and SQuAD readers, the task objective, metrics."""
