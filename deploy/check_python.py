"""The Python floor: Airflow 3.3 needs 3.10+, the project 3.11; 3.11.13 fixes the standard library's html.parser,
which before it is quadratic on unclosed tags (CVE-2025-6069) and other security fixes of 3.11.8–3.11.13
(the email and tarfile modules among them).

The image (Dockerfile) refuses to build below 3.11.13 (``--strict``). The Makefile refuses below 3.11 and warns
below 3.11.13: the website check no longer uses html.parser (it parses with lxml), so an older patch level is a
risk the warning names, not a broken product — the CI machine of this project has only 3.11.7.
"""

import sys

FLOOR = (3, 11, 13)


def main() -> int:
    version = sys.version_info[:3]
    shown = ".".join(map(str, version))
    if version < (3, 11):
        print(f"Python {shown}: the project needs Python 3.11 (3.11.13 or newer)", file=sys.stderr)
        return 2
    if version < FLOOR:
        message = (f"Python {shown} is older than 3.11.13: its html.parser is quadratic on unclosed tags and it "
                   "lacks later security fixes; the product does not use html.parser, but install 3.11.13+ "
                   "where you can (PYTHON=/path/to/python3.11 make install)")
        if "--strict" in sys.argv:
            print(message, file=sys.stderr)
            return 1
        print(f"warning: {message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
