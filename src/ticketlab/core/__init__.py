"""Core: errors, checks of config fields, the run identity (digest), atomic files and outputs, progress,
lazy exports."""
