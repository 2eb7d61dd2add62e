"""hashfed.sync."""
