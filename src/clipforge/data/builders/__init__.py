"""Data set builders: each renders or collects images with names and writes the emoji builder's layout."""
