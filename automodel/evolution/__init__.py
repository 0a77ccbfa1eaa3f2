"""The evolutionary search: the genome (``genome``), its operators (``operators``), Pareto ranking
(``pareto``), the plan a budget makes (``budget``), starting from earlier runs (``warm_start``) and the
generational loop (``loop``)."""
