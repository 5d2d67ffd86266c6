"""Schemathesis hooks for test_schemathesis.py (loaded by the CLI through SCHEMATHESIS_HOOKS).

The run acts with the server's admin key. Its stateful phase follows links such as
``GET /v1/keys`` -> ``DELETE /v1/keys/{key_id}`` and would revoke that very key
(a legitimate request: the API lets an admin revoke any key), leaving every later
request to answer 401. The key the run uses is the one thing it must not delete.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

KEPT_KEY_ID = os.environ["WUZHAO_SCHEMATHESIS_KEPT_KEY_ID"]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method == "DELETE" and case.path_parameters and case.path_parameters.get("key_id") == KEPT_KEY_ID:
        case.path_parameters["key_id"] = f"not-{KEPT_KEY_ID}"
