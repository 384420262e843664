"""``python -m vap_env.cli``: the ``vap-env`` command (as ``benchmarks/prompt_comparison.py`` runs it)."""

import sys

from vap_env.cli import main

sys.exit(main())
