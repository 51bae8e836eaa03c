"""gitml: Git-centric, declarative MLOps on DVC, Hydra and scikit-learn."""

from gitml.errors import GitmlError

__version__ = "0.1.0"

__all__ = ["GitmlError", "__version__"]
