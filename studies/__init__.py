"""Reproducible studies: each writes a CSV of every point, a PNG plot and a short report.

Every study follows :class:`studies.protocol.Study`; :data:`studies.registry.STUDIES` lists them.
"""
