"""``longtrace reward bench`` on a tiny workload: the table has the four regimes (no timing is asserted)."""
from reward.bench import REGIMES, make_workload
from reward.cli import BENCH_REGIMES, main


def test_bench_prints_every_regime(capsys):
    assert main(["bench", "--responses", "8", "--kb", "3", "--group-size", "4", "--entities", "10"]) == 0
    out = capsys.readouterr().out
    assert "one core" in out and "single process" in out
    for regime in REGIMES:
        assert regime in out
    # the scorer's rubric gives the released LongTraceRL code's scores on every response of every regime
    assert out.count("8/8") == 4


def test_bench_regime_subset_and_unknown_regime(capsys):
    assert main(["bench", "--responses", "4", "--kb", "2", "--regimes", "frequent/ASCII", "--no-longtracerl"]) == 0
    out = capsys.readouterr().out
    assert "frequent/ASCII" in out and "rare/ASCII" not in out
    assert main(["bench", "--responses", "4", "--kb", "2", "--regimes", "sometimes/ASCII"]) == 2


def test_workload_regimes():
    assert BENCH_REGIMES == REGIMES

    def texts(frequent, non_ascii):
        groups = make_workload(8, 20, 10, 4, 0, frequent=frequent, non_ascii=non_ascii)
        return [(r.response, r.extra_reward_info.rubrics) for group in groups for r in group]

    assert all(text.isascii() for text, _ in texts(False, 0.0))
    cjk = [text for text, _ in texts(False, 0.02)]
    assert all(not t.isascii() for t in cjk) and any(any("\u4e00" <= c <= "\u9fff" for c in t) for t in cjk)
    # frequent: every mentioned entity about once per 2 KB; rare: at most twice (reasoning + content)
    frequent = max(text.count(name) for text, names in texts(True, 0.0) for name in names)
    rare = max(text.count(name) for text, names in texts(False, 0.0) for name in names)
    assert frequent >= 5 and rare <= 3
