"""The Streamlit page: the settings form (``form``), the run's sections (``sections``), access
(``access``), and the data shaping as plain functions without Streamlit or torch (``views``)."""
