"""Who may use the page and which server folders it may read: an optional password and the dataset
roots, both from Streamlit's secrets (``.streamlit/secrets.toml``)."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import streamlit as st


def secret(name: str, default: Any = None) -> Any:
    """A setting from Streamlit's secrets (``.streamlit/secrets.toml``), or ``default``."""
    try:
        return st.secrets.get(name, default)
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return default


def dataset_roots(default: Path) -> list[Path]:
    """Folders on the server the page may offer as datasets: ``dataset_roots`` in the secrets
    (a list of paths), else ``default`` (the repository's ``data/``)."""
    roots = secret("dataset_roots") or [str(default)]
    return [Path(str(r)).expanduser().resolve() for r in roots]


def inside_roots(path: Path, default: Path) -> bool:
    return any(path == root or root in path.parents for root in dataset_roots(default))


def password_gate() -> bool:
    """True when the page may render: no ``password`` in the secrets, or the right one entered
    (compared in constant time). Nothing else of the page is drawn before."""
    password = secret("password")
    if not password or st.session_state.get("_authenticated"):
        return True
    st.title("AutoModel")
    entered = st.text_input("Password", type="password", key="password_entry")
    if entered:
        if hmac.compare_digest(entered.encode("utf-8"), str(password).encode("utf-8")):
            st.session_state["_authenticated"] = True
            st.session_state.pop("password_entry", None)
            st.rerun()
        st.error("That password is not right; ask whoever runs this page for it.")
    return False
