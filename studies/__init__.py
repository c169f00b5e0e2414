"""Reproducible studies: each writes a CSV of every point, a PNG plot and a short report."""
