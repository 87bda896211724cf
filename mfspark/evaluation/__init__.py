"""Judging models: rating and ranking metrics, model selection (``tune``, ``grid``) and the
side-by-side benchmark of mfspark, MLlib and the in-process floor."""
