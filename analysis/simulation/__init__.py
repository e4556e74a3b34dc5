"""Simulated traces and studies with planted effects: the test oracle of the analysis."""
