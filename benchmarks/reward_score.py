"""Rubric scoring throughput: 1,024 responses of ~130 KB, 20 rubric entities, one core, four regimes.

    python benchmarks/reward_score.py [longtrace reward bench flags]

Same as ``longtrace reward bench`` (reward/bench.py): one table with MB/s per regime (entities rare / frequent,
text ASCII / 2% non-ASCII with CJK), the ratio to a plain regex pass measured in the same run, the released
LongTraceRL rubric code and the whole scorer. Target >= 150 MB/s in every regime.
"""
import sys

from reward.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
