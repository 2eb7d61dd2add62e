"""hashfed.protocol."""
