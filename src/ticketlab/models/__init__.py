"""Models: the architecture map, unit structure, loading checkpoints, compaction."""
