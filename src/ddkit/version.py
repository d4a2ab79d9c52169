"""The package's version, in a module of its own so that any layer can record it (a tuned-timesteps
file, a run's config) without importing the package that imports every layer."""

__version__ = "0.2.0"
