"""Askr: a production application server for PHP apps."""

__version__ = "0.1.0"
SERVER_SOFTWARE = f"askr/{__version__}"
