"""shoploop: closed-loop search and recommendation for online shops."""

__version__ = "0.1.0"
