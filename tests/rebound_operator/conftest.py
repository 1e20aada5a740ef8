"""Make `import rebound_operator` find the real package, never this test folder.

pytest's default import mode puts `tests/` on sys.path, where this folder (named after the
package, without `__init__.py`) is a namespace package `rebound_operator`. The path finder
would return it before the editable install's finder is asked, so `rebound_operator.spec`
still loads (by full name) but `from rebound_operator import GROUP` fails. A regular package
anywhere on sys.path beats a namespace portion, so the source root goes on the path.
"""

import sys
from pathlib import Path

_SOURCE_ROOT = str(Path(__file__).resolve().parents[2] / "operator")
if _SOURCE_ROOT not in sys.path:
    sys.path.append(_SOURCE_ROOT)
_loaded = sys.modules.get("rebound_operator")
if _loaded is not None and getattr(_loaded, "__file__", None) is None:
    del sys.modules["rebound_operator"]  # a namespace stand-in imported before this ran
