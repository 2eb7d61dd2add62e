"""The ``hashfed`` command line: one click module per command group."""
