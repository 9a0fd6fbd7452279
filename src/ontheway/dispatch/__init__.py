"""Dispatch: choosing, locking and assigning drivers; reassignment."""
