"""Plumbing with no ML: errors, paths, fingerprints, tables, atomic writes, output folders, disk-full handling, the torch device."""
