"""Data shaping for the Streamlit page: tables, charts, status lines and form settings.

Everything here is plain Python, pandas and Altair, so it can be tested and timed without
Streamlit and without torch. The page's modules only lay these out. Generations are stored from 0;
the page shows them from 1 ("generation 1 of 5"), and ``labels`` does that shift in one place
(:func:`gen_label`).
"""

from __future__ import annotations

from automodel.page.views.charts import (  # noqa: F401
    COST_LABELS,
    MAX_CHART_POINTS,
    _x_axis,
    candidate_points,
    compare_chart,
    compare_frame,
    fitness_chart,
    generation_lines,
    generations_long,
    pareto_chart,
    pareto_frame,
    thin_points,
)
from automodel.page.views.form_model import (  # noqa: F401
    BUDGET_CHOICES,
    DATASET_CHOICES,
    FOLDER_CHOICE,
    FORM_FIELDS,
    NO_SEARCH,
    PRESETS,
    SPACE_FIELDS,
    UPLOAD_CHOICE,
    _no_search,
    budget_choice_for,
    dataset_choice_for,
    form_config,
    plan_caption,
    preset_config,
    tracking_caption,
)
from automodel.page.views.insight import (  # noqa: F401
    FINAL_CURVE,
    GENES,
    LABEL_WIDTH,
    architecture_dot,
    confusion_chart,
    diversity_chart,
    final_training_curve,
    gene_chart,
    gene_frame,
    learning_curve_charts,
    learning_curves,
    per_class_frame,
)
from automodel.page.views.labels import (  # noqa: F401
    CANDIDATE_STATUSES,
    NOT_FAILED,
    RESUMABLE,
    RUN_BADGES,
    STAT_COLORS,
    STATUS_COLORS,
    STATUS_TEXT,
    dataset_name,
    fmt_duration,
    fmt_fitness,
    gen_label,
    run_label,
    runs_table,
    sentence,
)
from automodel.page.views.status import StatusView, _badge, _batch_bar, _clip, estimate_eta, run_elapsed, status_view  # noqa: F401
from automodel.page.views.tables import (  # noqa: F401
    IMBALANCE_WARNING,
    INDIVIDUAL_COLUMNS,
    _named,
    chart_caption,
    dataset_caption,
    failures_table,
    fmt_bytes,
    folder_preview,
    individuals_frame,
    layer_frame,
    population_table,
    started_from,
    status_counts,
)
