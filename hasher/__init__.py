"""hashfed.hasher."""
