"""hashfed.signing."""
