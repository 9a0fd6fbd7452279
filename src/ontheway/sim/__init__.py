"""The city simulator and the demo's report."""
