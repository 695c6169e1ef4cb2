"""The day in a terminal and a task log: the per-stage table ``admission day`` prints and ``summarize_day`` logs."""

from __future__ import annotations

from admission.plan import Plan

TABLE_HEADER = f"{'этап':>4}  {'срок':10}  {'выполнено':>9}  {'отстают':>7}  {'просрочено':>10}  название"


def stage_table(plan: Plan, checked: dict) -> str:
    """The per-stage counts of a ``check_stages`` result as a Russian table (the run_day log)."""
    lines = [TABLE_HEADER]
    for stage in plan.ordered_stages:
        got = checked["stages"].get(str(stage.number), {})
        deadline = stage.deadline.isoformat() if stage.deadline else "весь период"
        if not got.get("judged"):
            counts = "проверка не выполнена (см. журнал check_stages)"
        else:
            counts = f"{got.get('complete', 0):>9}  {got.get('lagging', 0):>7}  {got.get('overdue', 0):>10}"
        lines.append(f"{stage.number:>4}  {deadline:10}  {counts}  {stage.title}")
    return "\n".join(lines)
