"""Data-generation throughput: KILT-shaped ingestion, synthetic-world generation and ingestion, BM25 index build,
search queries/s (against bm25s's own retrieve() on the same index), random walks/s.

    python benchmarks/data_gen.py [longtrace data bench flags]     # default: a 100K-page synthetic world

Same as ``longtrace data bench``. Targets: ingestion >= 2,000 pages/s per core, search >= 200 queries/s per core.
"""
import sys

from data_gen.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
