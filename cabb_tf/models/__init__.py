"""The two-head conversion model and its parts."""
