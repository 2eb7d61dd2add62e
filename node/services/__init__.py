"""Services: the case desk, sync, witnessing, publishing, export and recovery."""
