"""The `admission` console command: plan check, demo data, a campaign day."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from admission.plan import PlanError, load_plan, plan_files
from admission.tools.bench import main as bench_main
from admission.tools.demo import generate
from admission.tools.scale import change
from admission.tools.scale import generate as generate_scaled


def _plan_check(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or plan_files()
    status = 0
    for path in paths:
        files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
        for file in files:
            try:
                plan = load_plan(file)
            except PlanError as exc:
                status = 1
                stages = ", ".join(map(str, exc.stages))
                print(f"INVALID {file}" + (f" (stages {stages})" if stages else ""), file=sys.stderr)
                for problem in exc.problems:
                    print(f"  - {problem}", file=sys.stderr)
            else:
                print(f"OK {file}: {plan.summary()}")
    return status


def _demo_data(args: argparse.Namespace) -> int:
    if args.scale == "demo":
        kinds = generate(args.outdir, seed=args.seed, sites=args.sites)
    else:
        if args.changed_fraction:
            changed = change(args.outdir, args.changed_fraction, args.seed)
            print(f"{args.outdir}: the next day's folder, {len(changed)} per-organization files changed")
            return 0
        kinds = generate_scaled(args.outdir, args.scale, seed=args.seed)
    print(f"demo region written to {args.outdir}: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    return bench_main(args)


def _day(args: argparse.Namespace) -> int:
    # Task logs of eight DAGs drown the summary; warnings (data problems) still show.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    # The Airflow boundary: imported after the logging level is set, and only for the command that runs Airflow.
    from admission.adapter.day import run_day

    return run_day(args.date, dry_run=args.dry_run)


def _demo(args: argparse.Namespace) -> int:
    """Several campaign days of the demo region, the data catching up between them (tools.demo.FIXES), each day
    through Airflow as ``admission day`` runs it: the chart, the report's changes and the page show a trajectory."""
    import datetime as dt
    import time

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    from admission.adapter.day import run_day
    from admission.plan import load_valid_plans
    from admission.workdays import WorkCalendar

    until = dt.date.fromisoformat(args.until)
    plan = next((p for p in load_valid_plans()[0] if p.covers(until)), None)
    calendar = WorkCalendar.for_plan(plan) if plan else WorkCalendar()
    days, day = [], until
    while len(days) < args.days:
        if calendar.is_working_day(day):
            days.append(day)
        day -= dt.timedelta(days=1)
    days.reverse()
    began = time.monotonic()
    status = 0
    for i, when in enumerate(days):
        generate(args.outdir, seed=args.seed, sites=args.sites, progress=i)
        last = i == len(days) - 1
        print(f"\n=== день кампании {when:%d.%m.%Y} ({i + 1} из {len(days)}): данные демо-региона "
              f"{'на этот день' if i else 'первого дня'} ===", flush=True)
        status |= run_day(when.isoformat(), summary=last)
    print(f"\ndemo: {len(days)} campaign days ({days[0]:%d.%m.%Y}–{days[-1]:%d.%m.%Y}) in "
          f"{time.monotonic() - began:.0f} s")
    return status


def _intake(args: argparse.Namespace) -> int:
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    from admission.adapter.day import run_intake

    return run_intake(args.date, dry_run=args.dry_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="admission", description="First-grade e-enrollment campaign monitor")
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="work with plan files")
    plan_sub = plan.add_subparsers(dest="plan_command", required=True)
    check = plan_sub.add_parser("check", help="validate plan files (default: include/plans)")
    check.add_argument("paths", nargs="*", help="plan files or folders")
    check.set_defaults(func=_plan_check)

    demo = sub.add_parser("demo-data", help="write the invented demo region's data folder")
    demo.add_argument("outdir")
    demo.add_argument("--seed", type=int, default=2019)
    demo.add_argument("--sites", help="base URL of the demo websites (default http://127.0.0.1:8399; "
                                      "admission.tools.demo_sites serves them)")
    demo.add_argument("--scale", choices=["demo", "region", "national"], default="demo",
                      help="demo: 3 МООУСО, mixed formats (default); region: ≈1,500 schools; national: ≈85,000 orgs")
    demo.add_argument("--changed-fraction", type=float, default=0.0, metavar="F",
                      help="turn an existing region/national folder into the next day's: a fraction F of the "
                           "per-organization files changed (which ones: --seed)")
    demo.set_defaults(func=_demo_data)

    days = sub.add_parser("demo", help="several campaign days of the demo region, the data catching up between them")
    days.add_argument("outdir", help="the demo data folder (the Variable admission_data_dir must name it)")
    days.add_argument("--until", default="2020-01-15", help="the last campaign day (YYYY-MM-DD)")
    days.add_argument("--days", type=int, default=3, help="how many working days, ending with --until")
    days.add_argument("--seed", type=int, default=2019)
    days.add_argument("--sites", help="base URL of the demo websites (default http://127.0.0.1:8399)")
    days.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="time and memory of a campaign day, phase by phase (no SMTP)")
    bench.add_argument("--scale", choices=["tiny", "demo", "region", "national"], default="region")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--data", help="an existing data folder (default: generated into a cache folder)")
    bench.add_argument("--skip-extras", action="store_true", help="skip the DAG parse and SMTP measurements")
    bench.add_argument("--skip-real", action="store_true",
                       help="skip the real path (admission day --dry-run through Airflow, first and next day)")
    bench.add_argument("--messages", type=int, default=10000, help="digests to send to the loopback SMTP server")
    bench.set_defaults(func=_bench)

    day = sub.add_parser("day", help="run every stage DAG of every plan covering DATE through Airflow")
    day.add_argument("date", help="YYYY-MM-DD")
    day.add_argument("--dry-run", action="store_true", help="compute and store, send no mail")
    day.set_defaults(func=_day)

    intake = sub.add_parser("intake", help="read the mailbox of admission_imap once through Airflow (the intake DAG)")
    intake.add_argument("date", nargs="?", help="YYYY-MM-DD the answers are judged on (default: today)")
    intake.add_argument("--dry-run", action="store_true", help="read and store, send no receipts")
    intake.set_defaults(func=_intake)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
