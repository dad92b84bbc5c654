"""spaCy pipeline components and corpus augmenters.

The augmenters register on import of this package, so they are registered
wherever a component of it is.
"""
from . import augmenters  # noqa: F401
