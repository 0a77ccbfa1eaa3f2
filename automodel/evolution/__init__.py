"""The evolutionary search: the generational loop (``loop``). The genome, the operators and the
Pareto ranking it uses are ``automodel.genome``, ``automodel.operators`` and ``automodel.pareto``."""
