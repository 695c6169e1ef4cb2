"""Invalid plan files, shown as this file's import error (the valid plans load in admission_campaign.py).

Airflow reports import errors per DAG file: if the campaign file raised for one broken plan, every
campaign's DAGs would disappear. So that file builds the valid plans, and this one fails, naming each
broken plan file and its stages, until they are fixed.
"""

from admission.plan import load_valid_plans

_errors = load_valid_plans()[1]
if _errors:
    raise ImportError("invalid plan files (their DAGs are not built; the other plans are served):\n"
                      + "\n".join(f"- {e}" + (f" [stages: {', '.join(map(str, e.stages))}]" if e.stages else "")
                                  for e in _errors))
