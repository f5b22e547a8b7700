import pytest

from reward.parsing import ValidityConfig, clean_text, parse_history, parse_response

OK = "<think>\nlet me think\n</think>\n\nThe answer is 42.<|im_end|>"


def test_valid_response_is_split_at_think_close():
    p = parse_response(OK)
    assert p.valid
    assert p.reasoning.strip() == "let me think"
    assert p.content == "The answer is 42."
    assert p.final_content == p.content


def test_template_preopened_think_is_optional():
    assert parse_response("reasoning</think>answer<|im_end|>").valid


@pytest.mark.parametrize(
    "text,kwargs,reason",
    [
        (OK, {"status": "truncated"}, "truncated"),
        (OK, {"status": "aborted"}, "aborted"),
        (OK, {"status": "failed"}, "failed"),
        ("r</think>answer", {}, "no_stop_token"),
        ("r</think>answer<|endoftext|>", {}, "no_stop_token"),
        ("r</think>answer", {"stop": "<|endoftext|>"}, "no_stop_token"),
        ("no think close here<|im_end|>", {}, "no_think_end"),
        ("a</think>b</think>c<|im_end|>", {}, "multiple_think_end"),
        ("<think>  </think>answer<|im_end|>", {}, "empty_reasoning"),
        ("r</think>   <|im_end|>", {}, "empty_content"),
        ("r</think>answer <|im_start|>user<|im_end|>", {}, "special_token_in_content"),
        ("r</think>answer <think> again<|im_end|>", {}, "special_token_in_content"),
    ],
)
def test_invalid_reasons(text, kwargs, reason):
    assert parse_response(text, **kwargs).invalid_reason == reason


def test_stop_given_explicitly_when_text_has_no_special_tokens():
    # slime/SGLang strip special tokens from the text; the stop token then comes from the finish reason
    assert parse_response("r</think>answer", stop="<|im_end|>").valid


def test_unknown_status_is_rejected():
    with pytest.raises(ValueError, match="unknown status"):
        parse_response(OK, status="done")


def test_non_thinking_models():
    cfg = ValidityConfig(thinking=False)
    p = parse_response("Just the answer.<|im_end|>", cfg=cfg)
    assert p.valid and p.content == "Just the answer." and p.reasoning == ""
    assert parse_response("r</think>answer<|im_end|>", cfg=cfg).invalid_reason == "special_token_in_content"


def test_require_stop_can_be_disabled():
    assert parse_response("r</think>answer", cfg=ValidityConfig(require_stop=False)).valid


def test_history_mode_reads_every_assistant_turn_for_the_rubric():
    history = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "reasoning_content": "search for Lady Gaga", "content": "calling a tool"},
        {"role": "tool", "content": "results"},
        {"role": "assistant", "reasoning_content": "found RedOne", "content": "Answer: RedOne"},
    ]
    p = parse_history(history, stop="<|im_end|>")
    assert p.valid
    assert p.final_content == "Answer: RedOne"
    assert "Lady Gaga" in p.reasoning and "found RedOne" in p.reasoning
    assert "calling a tool" in p.content and "Answer: RedOne" in p.content


def test_history_mode_raw_final_message_is_split():
    p = parse_history([{"role": "assistant", "content": "think</think>final<|im_end|>"}])
    assert p.valid and p.final_content == "final" and p.reasoning == "think"


def test_history_without_final_assistant_message():
    assert parse_history([{"role": "user", "content": "q"}]).invalid_reason == "no_assistant_message"
    assert parse_history([]).invalid_reason == "no_assistant_message"


def test_history_reasoning_content_null_means_absent():
    # what a pydantic Message dumps for a raw final message: the content is split at </think>
    p = parse_history([{"role": "assistant", "content": "think</think>final<|im_end|>", "reasoning_content": None}])
    assert p.valid and p.final_content == "final" and p.reasoning == "think"


def test_history_turns_are_in_conversation_order():
    history = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "reasoning_content": "R1", "content": "C1"},
        {"role": "assistant", "reasoning_content": "R2", "content": "C2"},
    ]
    for mode in ("default", "reference"):
        assert parse_history(history, stop="<|im_end|>", mode=mode).turns == (("R1", "C1"), ("R2", "C2"))


def test_unknown_parsing_mode():
    with pytest.raises(ValueError, match="parsing mode"):
        parse_response(OK, mode="lenient")


def test_clean_text_replaces_only_lone_surrogates():
    assert clean_text("Paris \ud800 France \udfff") == "Paris \ufffd France \ufffd"
    for text in ("ascii", "Beyoncé 中文 \U0001F600", "\uffff\x00"):
        assert clean_text(text) is text


# ------------------------------------------------------------------------------- reference mode (LongTraceRL)


def ref(text, **kwargs):
    return parse_response(text, mode="reference", **kwargs)


@pytest.mark.parametrize(
    "text,kwargs,reason,reasoning,content",
    [
        (OK, {}, None, "<think>\nlet me think", "The answer is 42."),  # the leading <think> stays
        (" \n </think>\n\nanswer<|im_end|>", {}, None, " \n ", "answer"),  # blank reasoning is not empty
        ("r</think>\n\n  \t <|im_end|>", {}, None, "r", "  \t "),  # nor blank content
        ("\n</think>\n\nanswer<|im_end|>", {}, "empty_reasoning", "", "answer"),  # one newline removed: empty
        ("r\n</think>\n\n<|im_end|>", {}, "empty_content", "r", ""),
        ("r</think>\n\n\nanswer \n<|im_end|>", {}, None, "r", "\nanswer \n"),  # only "\n\n" removed
        ("r</think>I <think> so<|im_end|>", {}, None, "r", "I <think> so"),  # <think> allowed in content
        ("r</think>a <|im_start|>b<|im_end|>", {}, "special_token_in_content", "r", "a <|im_start|>b"),
        ("a</think>b</think>c<|im_end|>", {}, "multiple_think_end", "a</think>b", "c"),  # split at the last
        ("r</think>answer<|endoftext|>", {}, "no_stop_token", "r", "answer"),  # parsed, but ill-formed
        ("r</think>answer", {"stop": "<|im_end|>"}, None, "r", "answer"),  # the engine stripped the stop
        ("no close<|im_end|>", {}, "no_think_end", "no close", ""),
    ],
)
def test_reference_split_and_reasons(text, kwargs, reason, reasoning, content):
    p = ref(text, **kwargs)
    assert (p.invalid_reason, p.reasoning, p.content, p.final_content) == (reason, reasoning, content, content)
    assert p.scorable == bool(content)


@pytest.mark.parametrize(
    "text,kwargs,reason",
    [
        ("r</think>answer<|im_end|>\n", {}, "no_stop_token"),  # whitespace after the stop token: none found
        ("r</think>answer", {}, "no_stop_token"),
        ("r</think>answer", {"stop": "</s>"}, "no_stop_token"),
        ("r</think>answer<|im_end|>", {"status": "truncated"}, "truncated"),
        ("r</think>answer<|im_end|>", {"status": "aborted"}, "aborted"),
    ],
)
def test_reference_unfinished_responses_keep_nothing_to_score(text, kwargs, reason):
    p = ref(text, **kwargs)
    assert p.invalid_reason == reason and not p.scorable and p.turns == ()


def test_reference_without_require_stop():
    p = ref("r</think>answer", cfg=ValidityConfig(require_stop=False))
    assert p.valid and p.content == "answer"


def test_reference_history_mode_checks_only_the_last_message():
    history = [{"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "reasoning_content": "tool call"},
               {"role": "assistant", "content": "Poker Face</think>\n\n Answer: X ", "reasoning_content": None}]
    p = parse_history(history, mode="reference")
    assert p.valid and p.final_content == "Answer: X" and not p.answer_blank
    assert p.turns == ((("tool call"), None), (None, "Poker Face</think>\n\n Answer: X "))
    blank = parse_history([{"role": "assistant", "content": "x</think>  "}], mode="reference")
    assert blank.valid and blank.answer_blank and blank.final_content == ""
    for bad in ([], [{"role": "user", "content": "q"}], [{"role": "assistant", "reasoning_content": "r"}]):
        p = parse_history(bad, mode="reference")
        assert p.invalid_reason == "no_assistant_message" and not p.scorable
    assert parse_history(history, status="truncated", mode="reference").invalid_reason == "truncated"
