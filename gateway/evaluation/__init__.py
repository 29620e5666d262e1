"""Evaluation of the signal core and model on WFDB databases (reads files; not used on the edge)."""
