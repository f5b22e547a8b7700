import pytest

from reward.parsing import ValidityConfig, parse_history, parse_response

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
