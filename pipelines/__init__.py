"""Pipelines built on medpipes.core: one self-contained sub-package each."""
