"""AutoModel's page: start, watch, stop, resume and download a search (``streamlit run app.py``).

The page itself is :mod:`automodel.page.frame`; this file gives it the repository's folder, whose
``data/`` holds the bundled datasets and, by default, the store.
"""

from pathlib import Path

from automodel.page.frame import main

main(Path(__file__).resolve().parent)
