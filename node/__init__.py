"""hashfed.node."""
