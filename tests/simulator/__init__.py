"""SMSC simulator tests."""
