"""textgym.feedback: human ratings (terminal and web page), validation, log, resume, timeouts,
pairwise preferences. The page is driven over HTTP here; test_rating_page_browser.py drives it
in a real headless browser."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from textgym import ScorerError, TextGenVectorEnv
from textgym.feedback import (
    HumanRatingScorer,
    PreferenceCollector,
    RatingScale,
    RatingTimeout,
    collect_preferences,
    comparisons_from_ratings,
    parse_choice,
    read_comparisons,
    read_ratings,
)
from textgym.tasks import PromptSet, Task, read_jsonl

REPO = Path(__file__).resolve().parents[1]


def terminal(log: Path, lines: str | list[str], **kwargs) -> tuple[HumanRatingScorer, io.StringIO]:
    text = lines if isinstance(lines, str) else "".join(f"{x}\n" for x in lines)
    out = io.StringIO()
    scorer = HumanRatingScorer(
        "terminal", log_path=log, input=io.StringIO(text), output=out, **kwargs
    )
    return scorer, out


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no rating given: enter a whole number from 1 to 5"),
        ("   ", "no rating given"),
        ("abc", "'abc' is not a number: enter a whole number from 1 to 5"),
        ("3.5", "'3.5' is not a whole number"),
        ("9", "9 is out of range: enter a whole number from 1 to 5"),
        ("0", "0 is out of range"),
        ("-1", "-1 is out of range"),
        ("nan", "'nan' is not a finite number"),
        ("inf", "'inf' is not a finite number"),
    ],
)
def test_invalid_ratings_get_a_clear_message(text, message):
    value, error = RatingScale(1, 5).parse(text)
    assert value is None and message in error


def test_valid_ratings_and_float_scales():
    scale = RatingScale(1, 5)
    assert scale.parse(" 4 ") == (4, None) and scale.parse("5.0") == (5, None)
    assert scale.parse(1) == (1, None)
    unit = RatingScale(0.0, 1.0)
    assert not unit.integer and unit.parse("0.25") == (0.25, None)
    assert "a number from 0 to 1" in unit.parse("2")[1]
    with pytest.raises(ValueError, match="low < high"):
        RatingScale(5, 1)
    with pytest.raises(ValueError, match="whole-number ends"):
        RatingScale(0.5, 2.0, integer=True)


def test_pairwise_choices():
    assert [parse_choice(t)[0] for t in ("a", "B", " t ", "tie", "=")] == [
        "a",
        "b",
        "tie",
        "tie",
        "tie",
    ]
    assert "no choice given" in parse_choice("")[1]
    assert "'x' is not a choice" in parse_choice("x")[1]


def test_constructor_validation(tmp_path):
    log = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match="interface must be one of"):
        HumanRatingScorer("gui", log_path=log)
    with pytest.raises(ValueError, match="fallback must be 'raise', a number or a scorer"):
        HumanRatingScorer(log_path=log, fallback="skip")
    with pytest.raises(ValueError, match="must be finite"):
        HumanRatingScorer(log_path=log, fallback=float("nan"))
    with pytest.raises(ValueError, match="timeout_s"):
        HumanRatingScorer(log_path=log, timeout_s=0)
    with pytest.raises(ValueError, match="reward must be one of"):
        HumanRatingScorer(log_path=log, reward="log")


# --- terminal -----------------------------------------------------------------------------


def test_terminal_batch_on_one_screen_with_retries_and_log(tmp_path):
    log = tmp_path / "ratings.jsonl"
    scorer, out = terminal(log, ["", "7", "good", "2.5", "5", "1", "3"])
    rewards = scorer(["p1", "p2", "p3"], ["c1", "c2", "c3"], [None, "ref two", None])
    assert rewards.dtype == np.float32
    np.testing.assert_allclose(rewards, [1.0, 0.0, 0.5])
    screen = out.getvalue()
    assert screen.count("Rate 3 completion(s)") == 1  # one screen for the whole batch
    assert screen.index("[3/3]") < screen.index("rating for [1/3]")  # all shown before asking
    assert "reference:  ref two" in screen
    for message in (
        "no rating given",
        "7 is out of range",
        "'good' is not a number",
        "'2.5' is not a whole number",
    ):
        assert f"invalid: {message}" in screen
    assert screen.count("rating for [1/3]") == 5  # asked again after each invalid answer
    rows = read_ratings(log)
    assert [(r["prompt"], r["completion"], r["rating"], r["reward"]) for r in rows] == [
        ("p1", "c1", 5, 1.0),
        ("p2", "c2", 1, 0.0),
        ("p3", "c3", 3, 0.5),
    ]
    assert rows[1]["reference"] == "ref two" and rows[0]["scale"] == [1, 5]
    assert all(r["time"].endswith("+00:00") and r["unix"] > 1e9 for r in rows)
    assert len({r["batch"] for r in rows}) == 1 and [r["item"] for r in rows] == [0, 1, 2]
    assert scorer.last_call == {
        "batch_size": 3,
        "asked": 3,
        "reused": 0,
        "fallback": 0,
        "closed": "complete",
    }


def test_identical_pairs_are_asked_once_and_none_bytes_accepted(tmp_path):
    scorer, out = terminal(tmp_path / "r.jsonl", ["4", "2"])
    rewards = scorer(["p", "p", "p"], ["same", b"bytes", "same"], None)
    np.testing.assert_allclose(rewards, [0.75, 0.25, 0.75])
    assert "Rate 2 completion(s)" in out.getvalue()
    scorer2, _ = terminal(tmp_path / "r2.jsonl", ["3"])
    np.testing.assert_allclose(scorer2(["p"], [None], [None]), [0.5])
    assert read_ratings(tmp_path / "r2.jsonl")[0]["completion"] == ""


@pytest.mark.parametrize(
    "reward, expected, low_high",
    [
        ("linear", [0.0, 0.5, 1.0], (0.0, 1.0)),
        ("centered", [-1.0, 0.0, 1.0], (-1.0, 1.0)),
        ("raw", [1.0, 3.0, 5.0], (1.0, 5.0)),
        (lambda r: 10 * r, [10.0, 30.0, 50.0], (10.0, 50.0)),
    ],
)
def test_reward_mappings(tmp_path, reward, expected, low_high):
    scorer, _ = terminal(tmp_path / "r.jsonl", ["1", "3", "5"], reward=reward)
    np.testing.assert_allclose(scorer(["p"] * 3, ["a", "b", "c"], [None] * 3), expected)
    assert scorer.reward_range == low_high


def test_resume_reuses_logged_ratings(tmp_path):
    log = tmp_path / "r.jsonl"
    first, _ = terminal(log, ["5", "1"])
    first(["p", "p"], ["x", "y"], [None, None])
    # A new scorer on the same log: nothing to type, so asking anything would fail (EOF).
    again, out = terminal(log, "")
    np.testing.assert_allclose(again(["p", "p"], ["y", "x"], None), [0.0, 1.0])
    assert again.last_call["asked"] == 0 and again.last_call["reused"] == 2
    assert "Rate" not in out.getvalue()
    # Only the new completion is asked for.
    mixed, out = terminal(log, ["3"])
    np.testing.assert_allclose(mixed(["p", "p"], ["x", "new"], None), [1.0, 0.5])
    assert "Rate 1 completion(s)" in out.getvalue()
    # resume=False asks again; a different scale is not reused (with a warning).
    fresh, _ = terminal(log, ["2", "2"], resume=False)
    np.testing.assert_allclose(fresh(["p", "p"], ["x", "y"], None), [0.25, 0.25])
    with pytest.warns(UserWarning, match="on another scale"):
        ten, _ = terminal(log, ["10"], scale=(1, 10))
    assert ten.known_ratings() == {}


def test_timeout_fallbacks_and_ratings_before_timeout_are_kept(tmp_path):
    log = tmp_path / "r.jsonl"
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd) as stream, os.fdopen(write_fd, "w") as writer:
        writer.write("4\n")
        writer.flush()  # one answer, then nothing: the rest times out
        out = io.StringIO()
        scorer = HumanRatingScorer(
            "terminal", log_path=log, timeout_s=0.3, fallback=0.5, input=stream, output=out
        )
        t0 = time.monotonic()
        rewards = scorer(["p"] * 3, ["a", "b", "c"], [None] * 3)
        assert time.monotonic() - t0 < 5
        np.testing.assert_allclose(rewards, [0.75, 0.5, 0.5])
        assert scorer.last_call["fallback"] == 2 and scorer.last_call["closed"] == "timeout"
        assert (
            "2 of 3 completion(s) were not rated (timeout): given the fallback score 0.5"
            in out.getvalue()
        )
    assert [r["completion"] for r in read_ratings(log)] == ["a"]  # fallbacks are not logged

    calls = []

    def fallback_scorer(prompts, completions, references):
        calls.append(list(completions))
        return np.full(len(completions), -1.0, dtype=np.float32)

    scorer, _ = terminal(log, "", timeout_s=5, fallback=fallback_scorer)  # EOF at once
    np.testing.assert_allclose(scorer(["p"] * 3, ["a", "b", "c"], None), [0.75, -1.0, -1.0])
    assert calls == [["b", "c"]]  # only the unrated items, "a" was reused from the log

    scorer, _ = terminal(log, "", fallback="raise")
    with pytest.raises(RatingTimeout, match="2 of 3 completion.*were not rated.*resume=True"):
        scorer(["p"] * 3, ["a", "b", "c"], None)


def test_vector_env_asks_once_per_rollout(tmp_path, char_task):
    """All episodes of a rollout end in the same step (no EOS stop): one screen, one call."""
    out = io.StringIO()
    scorer = HumanRatingScorer(
        "terminal", log_path=tmp_path / "r.jsonl", input=io.StringIO("1\n2\n3\n4\n"), output=out
    )
    task = Task("human", PromptSet.from_list(["abc", "xyz", "hello", "say"]), scorer)
    envs = TextGenVectorEnv(
        num_envs=4,
        task=task,
        tokenizer="char",
        max_new_tokens=3,
        max_prompt_tokens=8,
        stop_on_eos=False,
    )
    envs.reset(seed=0)
    letters = np.array([[14, 15, 16, 17]] * 3)  # 'a', 'b', 'c', 'd': four different completions
    for step in range(3):
        _, rewards, terminated, truncated, infos = envs.step(letters[step])
    assert truncated.all() and out.getvalue().count("Rate 4 completion(s)") == 1
    np.testing.assert_allclose(rewards, [0.0, 0.25, 0.5, 0.75])
    assert list(infos["completion"]) == ["aaa", "bbb", "ccc", "ddd"]

    failing = HumanRatingScorer(
        "terminal", log_path=tmp_path / "r2.jsonl", input=io.StringIO(""), output=io.StringIO()
    )
    envs = TextGenVectorEnv(
        num_envs=2,
        task=Task("human", task.prompts, failing),
        tokenizer="char",
        max_new_tokens=1,
        max_prompt_tokens=8,
        stop_on_eos=False,
    )
    envs.reset(seed=0)
    with pytest.raises(ScorerError) as err:
        envs.step(np.array([14, 15]))
    assert isinstance(err.value.__cause__, RatingTimeout)


KILLED_RUN = textwrap.dedent(
    """
    import sys
    from textgym.feedback import HumanRatingScorer
    scorer = HumanRatingScorer("terminal", log_path=sys.argv[1], input=sys.stdin, output=sys.stderr)
    scorer(["p"] * 4, ["one", "two", "three", "four"], [None] * 4)
    print("finished")
    """
)


def test_ratings_survive_a_killed_run(tmp_path):
    """SIGKILL mid-batch after two ratings; a new run finds them and asks only for the rest."""
    log = tmp_path / "ratings.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(log)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        proc.stdin.write("5\n2\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while len(read_jsonl(log, missing_ok=True, skip_bad_lines=True)) < 2:
            assert proc.poll() is None, "the rating process ended early"
            assert time.monotonic() < deadline, "the ratings never reached the log"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert "finished" not in proc.stdout.read()
    proc.stdin.close()
    proc.stdout.close()

    scorer, out = terminal(log, ["4", "1"])  # the restarted run: only two answers to give
    rewards = scorer(["p"] * 4, ["one", "two", "three", "four"], [None] * 4)
    np.testing.assert_allclose(rewards, [1.0, 0.25, 0.75, 0.0])
    assert scorer.last_call["asked"] == 2 and scorer.last_call["reused"] == 2
    assert "Rate 2 completion(s)" in out.getvalue() and "one" not in out.getvalue()
    assert len(read_ratings(log)) == 4


def test_log_reader_skips_a_torn_last_line(tmp_path):
    log = tmp_path / "r.jsonl"
    log.write_text(
        json.dumps(
            {"type": "rating", "prompt": "p", "completion": "c", "rating": 3, "scale": [1, 5]}
        )
        + '\n\n{"type": "rating", "prom'
    )
    with pytest.warns(UserWarning, match=r"r.jsonl:3: skipping a line that is not valid JSON"):
        scorer = HumanRatingScorer(log_path=log, input=io.StringIO(""), output=io.StringIO())
    assert scorer.known_ratings() == {("p", "c"): 3}


# --- web page over HTTP ---------------------------------------------------------------------


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def post(url: str, data: dict | bytes, as_json: bool = False) -> tuple[int, str]:
    body = (
        json.dumps(data).encode()
        if as_json
        else "&".join(f"{k}={v}" for k, v in data.items()).encode()
    )
    request = urllib.request.Request(url, data=body)
    if as_json:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def call_in_thread(fn, *args):
    result: dict = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def wait_for_batch(ui, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while ui.batch is None or ui.batch.closed:
        assert time.monotonic() < deadline, "the scorer never posted its batch"
        time.sleep(0.01)
    return ui.batch


def test_web_form_validates_keeps_valid_answers_and_logs_them_at_once(tmp_path):
    log = tmp_path / "ratings.jsonl"
    out = io.StringIO()
    with HumanRatingScorer("web", log_path=log, output=out) as scorer:
        url = scorer.url
        assert (
            url.startswith("http://127.0.0.1:")
            and "textgym feedback page: " + url in out.getvalue()
        )
        assert "No batch yet" in get(url)
        thread, result = call_in_thread(
            scorer, ["p0", "p1", "p2"], ["<b>bold</b>", "c1", "c2"], [None, None, "r"]
        )
        batch = wait_for_batch(scorer.ui)
        assert f"waiting for 3 rating(s) at {url}" in out.getvalue()
        page = get(url)
        assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page  # escaped
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no external assets
        assert page.count('id="rating-') == 3 and "reference" in page

        status, page = post(
            url + "submit", {"batch": batch.batch_id, "r0": "5", "r1": "x", "r2": "9"}
        )
        assert status == 200
        assert re.search(
            r'id="error-1">\'x\' is not a number: enter a whole number from 1 to 5<', unescape(page)
        )
        assert re.search(r'id="error-2">9 is out of range', page)
        assert 'id="rating-0" value="5"' in page and 'id="rating-2" value="9"' in page
        assert "2 answer(s) need fixing: #2, #3" in page
        assert [r["rating"] for r in read_ratings(log)] == [5]  # the valid one is already on disk

        status, page = post(
            url + "submit", {"batch": batch.batch_id, "r0": "5", "r1": "1", "r2": "3"}
        )
        thread.join(10)
        assert "Thank you: all 3 answer(s)" in page
        np.testing.assert_allclose(result["value"], [1.0, 0.0, 0.5])
        assert [r["rating"] for r in read_ratings(log)] == [5, 1, 3]  # 5 was not logged twice
        # A stale form (the batch is complete) saves nothing.
        _, page = post(url + "submit", {"batch": batch.batch_id, "r0": "1"})
        assert "belonged to a batch that is closed" in page and len(read_ratings(log)) == 3
    with pytest.raises(urllib.error.URLError):
        get(url)  # closed


def test_web_json_api_and_timeout_fallback(tmp_path):
    log = tmp_path / "ratings.jsonl"
    with HumanRatingScorer(
        "web", log_path=log, output=io.StringIO(), scale=(0, 10), reward="raw"
    ) as scorer:
        thread, result = call_in_thread(scorer, ["p", "p"], ["a", "b"], None)
        batch = wait_for_batch(scorer.ui)
        info = json.loads(get(scorer.url + "api/batch"))
        assert (
            info["batch"] == batch.batch_id
            and info["scale"] == [0, 10]
            and info["remaining"] == [0, 1]
        )
        assert [i["completion"] for i in info["items"]] == ["a", "b"]
        status, reply = post(
            scorer.url + "api/submit",
            {"batch": batch.batch_id, "answers": {"0": "7", "1": ""}},
            as_json=True,
        )
        reply = json.loads(reply)
        assert status == 422 and reply["errors"] == {
            "1": "no rating given: enter a whole number from 0 to 10"
        }
        assert reply["remaining"] == [1]
        status, reply = post(
            scorer.url + "api/submit", {"batch": "old", "answers": {"1": "3"}}, as_json=True
        )
        assert status == 409
        status, reply = post(
            scorer.url + "api/submit",
            {"batch": batch.batch_id, "answers": {"1": "3"}},
            as_json=True,
        )
        assert status == 200 and json.loads(reply)["closed"] == "complete"
        thread.join(10)
        np.testing.assert_allclose(result["value"], [7.0, 3.0])
        with pytest.raises(urllib.error.HTTPError) as err:
            get(scorer.url + "nope")
        assert err.value.code == 404

    with HumanRatingScorer(
        "web",
        log_path=log,
        output=io.StringIO(),
        scale=(0, 10),
        reward="raw",
        timeout_s=0.3,
        fallback=-1.0,
    ) as scorer:
        rewards = scorer(["p", "p"], ["a", "new"], None)  # "a" is reused; "new" times out
        np.testing.assert_allclose(rewards, [7.0, -1.0])
        page = get(scorer.url)
        assert "closed (timeout) with 0 of 1 answered" in page and "scored by the fallback" in page
        assert 'http-equiv="refresh"' in page  # the waiting page follows the run by itself


# --- pairwise preferences -------------------------------------------------------------------


def test_pairwise_terminal_writes_comparisons(tmp_path):
    path = tmp_path / "prefs.jsonl"
    out = io.StringIO()
    collector = PreferenceCollector(
        path, interface="terminal", input=io.StringIO("a\nmaybe\n\nb\nt\n"), output=out
    )
    choices = collector(["p1", "p2", "p3"], ["a1", "a2", "a3"], ["b1", "b2", "b3"])
    assert choices == ["a", "b", "tie"]
    screen = out.getvalue()
    assert (
        "Compare 3 pair(s)" in screen
        and "'maybe' is not a choice" in screen
        and "no choice given" in screen
    )
    rows = read_jsonl(path)
    assert [(r["chosen"], r["rejected"], r["tie"]) for r in rows] == [
        ("a1", "b1", False),
        ("b2", "a2", False),
        ("a3", "b3", True),
    ]
    assert all(r["type"] == "comparison" and "time" in r for r in rows)
    assert read_comparisons(path) == collector.comparisons()
    assert read_comparisons(path)[1] == {
        "prompt": "p2",
        "chosen": "b2",
        "rejected": "a2",
        "tie": False,
    }
    # resume: known pairs are not asked again; EOF leaves a new one unanswered (None)
    again = PreferenceCollector(
        path, interface="terminal", input=io.StringIO(""), output=io.StringIO()
    )
    assert again(["p1", "p9"], ["a1", "x"], ["b1", "y"]) == ["a", None]
    assert again.last_call["unanswered"] == 1


def test_pairwise_web_form(tmp_path):
    path = tmp_path / "prefs.jsonl"
    collector = PreferenceCollector(path, interface="web", output=io.StringIO())
    try:
        thread, result = call_in_thread(collector, ["p1", "p2"], ["a1", "a2"], ["b1", "b2"])
        batch = wait_for_batch(collector.ui)
        page = get(collector.url)
        assert 'id="choice-1-tie"' in page and "completion-a" in page and "completion-b" in page
        _, page = post(collector.url + "submit", {"batch": batch.batch_id, "c0": "b"})  # c1 missing
        assert re.search(r'id="error-1">no choice given: choose A, B or tie<', page)
        assert 'id="choice-0-b" value="b" checked' in page
        post(collector.url + "submit", {"batch": batch.batch_id, "c0": "b", "c1": "tie"})
        thread.join(10)
        assert result["value"] == ["b", "tie"]
    finally:
        collector.close()
    assert read_comparisons(path) == [
        {"prompt": "p1", "chosen": "b1", "rejected": "a1", "tie": False},
        {"prompt": "p2", "chosen": "a2", "rejected": "b2", "tie": True},
    ]


def test_collect_preferences_and_comparisons_from_ratings(tmp_path):
    path = tmp_path / "prefs.jsonl"
    choices = collect_preferences(
        ["p"],
        ["x"],
        ["y"],
        path,
        interface="terminal",
        input=io.StringIO("b\n"),
        output=io.StringIO(),
    )
    assert choices == ["b"] and read_comparisons(path)[0]["chosen"] == "y"

    log = tmp_path / "ratings.jsonl"
    scorer, _ = terminal(log, ["5", "1", "3", "3"])
    scorer(["p", "p", "p", "q"], ["good", "bad", "ok", "alone"], None)
    pairs = comparisons_from_ratings(log)
    assert {(c["chosen"], c["rejected"]) for c in pairs} == {
        ("good", "bad"),
        ("good", "ok"),
        ("ok", "bad"),
    }
    with pytest.raises(ValueError, match="missing \\['rejected'\\]"):
        read_comparisons([{"prompt": "p", "chosen": "x"}])
