"""Data sources that produce the two canonical tables (see :mod:`deeprubin.schema`)."""
