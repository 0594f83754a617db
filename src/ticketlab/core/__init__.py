"""Core: errors, checks of config fields, atomic files and outputs, progress, lazy exports."""
