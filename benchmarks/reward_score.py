"""Reward scoring throughput: 1,024 responses of ~130 KB, 8 rubric entities, rule judge, one core.

    python benchmarks/reward_score.py [longtrace reward bench flags]

Same as ``longtrace reward bench``: prints MB/s, responses/s and the ratio to one pass of the reference regex
normaliser over the same text, measured in the same run. Target >= 100 MB/s.
"""
import sys

from reward.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
