"""Campaign monitor for first-grade e-enrollment: the domain package.

Everything except :mod:`admission.adapter` is plain Python (pandas, GX,
SQLAlchemy) and runs without Airflow.
"""

import logging as _logging

NOISY_LIBRARIES = ("great_expectations", "matplotlib", "PIL")


def quiet_libraries() -> None:
    """Library noise stays out of the task logs an admin reads (a check's log was 213 lines of GX's «Skipping
    registering function … because it is a closure» for 21 of its own): the libraries speak from WARNING up, the
    product's own summary lines stay at INFO. Called again after importing GX, which sets its own levels."""
    names = [n for n in list(_logging.Logger.manager.loggerDict) if n.split(".", 1)[0] in NOISY_LIBRARIES]
    for name in {*NOISY_LIBRARIES, *names}:  # GX sets INFO on some of its own module loggers
        logger = _logging.getLogger(name)
        if logger.level < _logging.WARNING:
            logger.setLevel(_logging.WARNING)


quiet_libraries()
