"""portpatrol: wait until the things a program depends on are ready."""

__version__ = "0.1.0"
