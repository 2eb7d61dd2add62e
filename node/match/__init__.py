"""Matching: the in-memory match index, its kernels and the bank that feeds it."""
