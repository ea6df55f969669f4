"""``python -m pipelines.serving``: the same as ``airsight serve``."""

from __future__ import annotations

import argparse
import sys

from pipelines.serving.cli import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m pipelines.serving", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
