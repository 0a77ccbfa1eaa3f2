"""Training one candidate: what a network starts from and how it learns."""
