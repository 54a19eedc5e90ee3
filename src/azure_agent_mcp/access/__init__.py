"""Temporary access: permissions that expire by themselves (issue 14)."""
