"""Heuristic and shallow recommenders (never imports torch)."""
