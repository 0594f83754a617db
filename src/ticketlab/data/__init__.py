"""Data: language-modelling corpora, downstream tasks, synthetic data. Import the submodules directly."""
