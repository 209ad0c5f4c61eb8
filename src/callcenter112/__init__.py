"""callcenter112: an emergency 112 call-handling server."""

__all__ = ["__version__"]

__version__ = "0.1.0"
