"""Problem-agnostic building blocks shared by every schedgym environment."""
