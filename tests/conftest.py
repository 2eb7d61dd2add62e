"""Collection rules shared by every test directory."""

from __future__ import annotations

import importlib.util

# tests/pytx drives the real python-threatexchange, which hashfed's own venv does not
# have (hashfed's core never imports it): 'make test' runs them in .venv-pytx.
collect_ignore = [] if importlib.util.find_spec("threatexchange") else ["pytx"]
