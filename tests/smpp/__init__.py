"""SMPP protocol core tests."""
