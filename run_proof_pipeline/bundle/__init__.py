"""Offline proof bundles: `export` (reads the database) and `verify-bundle` (needs none).

`bundle.verify` and `bundle.model` import nothing from `store/`: a bundle verifies on a
machine with no database and no connection settings.
"""
