"""Changing an env's task between episodes (``set_task``), the curriculum wrappers that move a
task's difficulty with it, and the learners' logging of the curriculum's level."""

from __future__ import annotations

import csv
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from test_agents_helpers import a_task, make_envs, make_policy, one_thread  # noqa: F401

import textgym
from agents import REINFORCE, CheckpointError, REINFORCEConfig
from textgym.char_tokenizer import DEFAULT_ALPHABET, EOS_ID, CharTokenizer
from textgym.errors import InvalidArgumentError, PromptTooLongError, ScorerError
from textgym.tasks import PromptSet, Task
from textgym.wrappers import Curriculum, VectorCurriculum

TOKENIZER = CharTokenizer(DEFAULT_ALPHABET + "\n")  # the procedural prompts end in "\nAnswer:"
LEVELS = ("easy", "medium", "hard")
ENV = dict(
    task="letter_counting",
    task_kwargs={"difficulty": "easy"},
    tokenizer=TOKENIZER,
    max_new_tokens=4,
    max_prompt_tokens=120,  # the longest letter-counting prompt (hard) has 109 characters
)


@pytest.fixture(scope="module")
def answers() -> dict[str, str]:
    """Every level's prompts -> the right answer."""
    return {
        e.prompt: e.reference
        for level in LEVELS
        for examples in textgym.make_task(
            "letter_counting", difficulty=level
        ).prompts.splits.values()
        for e in examples
    }


def prompts_of(level: str) -> list:
    return textgym.make_task("letter_counting", difficulty=level).prompts["train"]


# -- set_task --------------------------------------------------------------------------------------


def tagged_task(name: str, score: float, seen: list[str] | None = None, fail=None) -> Task:
    """Prompts ``<name>0`` .. ``<name>3``, all scored ``score``; ``seen`` collects the prompts
    the scorer was called with; the scorer raises while ``fail["now"]``."""

    def scorer(prompts, completions, references):
        if fail and fail["now"]:
            raise RuntimeError("scorer down")
        if seen is not None:
            seen.extend(prompts)
        return np.full(len(prompts), score, dtype=np.float32)

    return Task(name, PromptSet.from_list([f"{name}{i}" for i in range(4)]), scorer)


def test_a_rejected_set_task_changes_nothing():
    kwargs = dict(ENV, prompt_overflow="error")
    env, twin = textgym.TextGenEnv(**kwargs), textgym.TextGenEnv(**kwargs)
    envs, vtwin = (gym.make_vec("TextGen-v0", num_envs=3, **kwargs) for _ in range(2))
    unencodable = Task("accents", PromptSet.from_list(["caf\u00e9"]), tagged_task("x", 0).scorer)
    too_long = Task("long", PromptSet.from_list(["a" * 500]), tagged_task("x", 0).scorer)
    no_test = Task("no-test", PromptSet.from_list(["abc"], test=[]), tagged_task("x", 0).scorer)
    rejected = [
        (("letter_counting",), {"difficulty": "impossible"}, InvalidArgumentError),
        (("no_such_task",), {}, InvalidArgumentError),
        ((42,), {}, InvalidArgumentError),
        ((unencodable,), {}, InvalidArgumentError),
        ((too_long,), {}, PromptTooLongError),
        ((unencodable,), {"difficulty": "easy"}, InvalidArgumentError),  # kwargs with a Task
    ]
    for e in (env, twin):
        e.reset(seed=3)
    for e in (envs, vtwin):
        e.reset(seed=3)
    for target in (env, envs.unwrapped):
        core, scorer, prompts = target.core, target.scorer, target.prompts
        for args, task_kwargs, error in rejected:
            with pytest.raises(error):
                target.set_task(*args, **task_kwargs)
        assert target.core is core and target.scorer is scorer and target.prompts is prompts
    # The test split of a task without one may not become the split in use.
    env.reset(options={"split": "test"})
    twin.reset(options={"split": "test"})
    with pytest.raises(ValueError, match="no prompts"):
        env.set_task(no_test)
    # Everything goes on exactly as in the twins that saw no rejected call.
    actions = [*TOKENIZER.encode("3x"), EOS_ID]
    for _ in range(3):
        for action in actions:
            a, b = env.step(action), twin.step(action)
            assert np.array_equal(a[0]["input_ids"], b[0]["input_ids"]) and a[1:] == b[1:]
            if a[2] or a[3]:
                break
        assert env.reset()[1] == twin.reset()[1]
    for action in actions * 3:
        a, b = envs.step(np.full(3, action)), vtwin.step(np.full(3, action))
        assert np.array_equal(a[0]["input_ids"], b[0]["input_ids"])
        assert np.array_equal(a[1], b[1])


def test_set_task_applies_from_the_next_episode_on():
    a_seen, b_seen = [], []
    env = textgym.TextGenEnv(
        task=tagged_task("a", 1.0, a_seen), tokenizer=TOKENIZER, max_prompt_tokens=120
    )
    env.reset(seed=0)
    env.set_task(tagged_task("b", 2.0, b_seen))
    assert env.scorer(["b0"], [""], [None])[0] == 2.0
    _, reward, terminated, _, info = env.step(EOS_ID)  # the running episode: task a
    assert terminated and reward == 1.0 and info["prompt"].startswith("a")
    _, info = env.reset()
    _, reward, *_ = env.step(EOS_ID)
    assert info["prompt"].startswith("b") and reward == 2.0
    assert all(p.startswith("a") for p in a_seen) and b_seen and all(p[0] == "b" for p in b_seen)
    env.set_task("letter_counting", difficulty="medium")  # a named task, from a Task
    assert env.core.task_spec == ("letter_counting", {"difficulty": "medium"})


def test_running_episodes_keep_their_tasks_scorer():
    a_seen, b_seen, fail = [], [], {"now": False}
    envs = gym.make_vec(
        "TextGen-v0",
        num_envs=4,
        task=tagged_task("a", 1.0, a_seen),
        tokenizer=TOKENIZER,
        max_new_tokens=3,
    )
    base = envs.unwrapped
    x = TOKENIZER.encode("x")[0]
    envs.reset(seed=0)
    _, rewards, done, _, infos = envs.step(np.array([EOS_ID, EOS_ID, x, x]))
    assert done.tolist() == [True, True, False, False] and rewards.tolist()[:2] == [1.0, 1.0]
    base.set_task(tagged_task("b", 2.0, b_seen, fail))
    _, _, _, _, infos = envs.step(np.array([x, x, x, x]))  # slots 0, 1 restart under b
    assert infos["_prompt"].tolist() == [True, True, False, False]
    assert [str(p)[0] for p in infos["prompt"][:2]] == ["b", "b"]
    # One step ends a task-b episode (slot 0) and two task-a episodes (slots 2, 3): each is
    # scored by its own task's scorer. If one scorer fails, every slot is put back.
    actions = np.array([EOS_ID, x, EOS_ID, x])
    before = base.current_completions()
    fail["now"] = True
    with pytest.raises(ScorerError, match="scorer down"):
        envs.step(actions)
    assert base.current_completions() == before
    fail["now"] = False
    a_seen.clear()
    b_seen.clear()
    _, rewards, terminated, truncated, infos = envs.step(actions)
    assert (terminated | truncated).tolist() == [True, False, True, True]
    assert rewards.tolist() == [2.0, 0.0, 1.0, 1.0]
    assert infos["score"][[0, 2, 3]].tolist() == [2.0, 1.0, 1.0]
    assert [p[0] for p in a_seen] == ["a", "a"] and [p[0] for p in b_seen] == ["b"]


# -- Curriculum ------------------------------------------------------------------------------------


def play(env, info, answers, right: bool):
    """One episode: the right answer (or a wrong one) then EOS; returns the last step."""
    text = answers[info["prompt"]] if right else "x"
    for token in [*TOKENIZER.encode(text), EOS_ID]:
        step = env.step(token)
        assert "curriculum_level" in step[4] and "success_rate" in step[4]
        if step[2] or step[3]:
            return step
    raise AssertionError("the episode did not end")


def test_curriculum_promotes_on_right_answers_and_demotes_on_wrong(answers):
    env = Curriculum(
        textgym.TextGenEnv(**ENV), levels=LEVELS, window=4, promote_at=0.75, demote_at=0.25
    )
    _, info = env.reset(seed=0)
    assert (info["curriculum_level"], info["curriculum_name"]) == (0, "easy")
    assert info["success_rate"] == 0.0
    levels, rates, prompts = [], [], {}
    for right in [True] * 12 + [False] * 12:
        *_, info = play(env, info, answers, right)
        levels.append(info["curriculum_level"])
        rates.append(info["success_rate"])
        assert info["outcome"] == ("correct" if right else "format_error")
        _, info = env.reset()
        prompts.setdefault(info["curriculum_name"], set()).add(info["prompt"])
    # Four episodes at a level (min_episodes = window) move it; the top and bottom stay put.
    # An episode's last info shows the level it played and the rate counting it, also on the
    # step it moves the level (not the new level with an empty window's 0.0).
    assert levels == [0] * 4 + [1] * 4 + [2] * 8 + [1] * 4 + [0] * 4
    assert rates[:4] == [1.0] * 4 and rates[4:8] == [1.0] * 4
    assert rates[12:16] == [0.75, 0.5, 0.25, 0.0] and rates[16:20] == [0.0] * 4
    assert env.level == 0 and env.unwrapped.prompts["train"] == prompts_of("easy")
    assert prompts["hard"] <= {e.prompt for e in prompts_of("hard")}


def test_curriculum_levels_as_kwargs_and_tasks_and_bad_levels():
    env = Curriculum(
        textgym.TextGenEnv(**ENV),
        levels=[{"difficulty": "medium"}, tagged_task("b", 2.0)],
        start_level=1,
    )
    _, info = env.reset(seed=0)
    assert (info["curriculum_level"], info["curriculum_name"]) == (1, "b")
    assert env.unwrapped.core.task_name == "b"
    task_env = textgym.TextGenEnv(task=tagged_task("a", 1.0), tokenizer="char")
    for levels, match in [
        ("easy", "levels must be"),
        ([], "levels must be"),
        (["easy"], "task name"),  # the env plays a Task: no difficulty to change
        ([3], "levels\\[0\\]"),
    ]:
        with pytest.raises(InvalidArgumentError, match=match):
            Curriculum(task_env, levels=levels)
    with pytest.raises(InvalidArgumentError, match="demote_at"):
        Curriculum(textgym.TextGenEnv(**ENV), promote_at=0.2, demote_at=0.5)
    with pytest.raises(TypeError, match="textgym environment"):
        Curriculum(gym.make("CartPole-v1"))


def test_check_env_passes_on_the_wrapped_env():
    env = Curriculum(textgym.TextGenEnv(**ENV))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the environment is wrapped"
        check_env(env, skip_render_check=True)


def run_vector(autoreset_mode: str, answers, right, steps: int = 60, seed: int = 0):
    """Scripted agents in every slot; returns the curriculum level after each step."""
    n = 4
    envs = VectorCurriculum(
        gym.make_vec("TextGen-v0", num_envs=n, autoreset_mode=autoreset_mode, **ENV),
        levels=LEVELS,
        window=8,
        promote_at=0.75,
    )
    queues: list[list[int]] = [[] for _ in range(n)]

    def start(infos):  # a new episode in a slot: type its answer, then EOS
        for s in np.flatnonzero(infos.get("_prompt", np.zeros(n, bool))):
            text = answers[str(infos["prompt"][s])] if right(s) else "x"
            queues[s] = [*TOKENIZER.encode(text), EOS_ID]

    _, infos = envs.reset(seed=seed)
    start(infos)
    levels = []
    for _ in range(steps):
        actions = np.array([q[0] if q else EOS_ID for q in queues])
        _, _, _, _, infos = envs.step(actions)
        for q in queues:
            del q[:1]
        start(infos)
        assert infos["_curriculum_level"].all() and infos["_success_rate"].all()
        assert len(set(infos["curriculum_level"].tolist())) == 1
        levels.append(int(infos["curriculum_level"][0]))
    return levels, envs


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_vector_curriculum_moves_for_all_slots_and_is_deterministic(mode, answers):
    levels, envs = run_vector(mode, answers, right=lambda s: True)
    assert levels[0] == 0 and levels[-1] == 2 and levels == sorted(levels)
    assert envs.level == 2 and envs.unwrapped.prompts["train"] == prompts_of("hard")
    assert run_vector(mode, answers, right=lambda s: True)[0] == levels  # same seed, same run
    # Half the slots answer right: 0.5 neither promotes (0.75) nor demotes (0.2).
    assert set(run_vector(mode, answers, right=lambda s: s % 2 == 0)[0]) == {0}


# -- the schedule's state ---------------------------------------------------------------------------


def small_curriculum(**kwargs) -> Curriculum:
    settings = dict(levels=LEVELS, window=4, promote_at=0.75, demote_at=0.25)
    return Curriculum(textgym.TextGenEnv(**ENV), **{**settings, **kwargs})


def test_a_loaded_state_continues_the_schedule_exactly(answers):
    env = small_curriculum()
    _, info = env.reset(seed=0)
    for right in [True] * 4 + [True, False]:  # four right answers move it up; two at level 1
        *_, info = play(env, info, answers, right)
        _, info = env.reset()
    state = json.loads(json.dumps(env.state_dict()))  # plain JSON values
    assert (state["level"], state["results"], state["episodes"]) == (1, [True, False], 2)
    twin = small_curriculum()
    assert twin.level == 0
    twin.load_state_dict(state)
    assert twin.state_dict() == state and twin.unwrapped.prompts["train"] == prompts_of("medium")
    # Under the same seed, the same answers give the same levels and success rates.
    runs = []
    for curriculum in (env, twin):
        _, info = curriculum.reset(seed=7)
        seen = []
        for right in [True, True, False, True, True, True, False, False, False, False]:
            *_, info = play(curriculum, info, answers, right)
            seen.append((info["curriculum_level"], info["success_rate"], info["score"]))
            _, info = curriculum.reset()
        runs.append(seen)
    assert runs[0] == runs[1]
    assert {level for level, *_ in runs[0]} == {1, 2}  # it moved after the load


def test_a_state_that_does_not_fit_is_rejected_and_changes_nothing(answers):
    env = small_curriculum()
    _, info = env.reset(seed=0)
    for right in [True] * 5:
        *_, info = play(env, info, answers, right)
        _, info = env.reset()
    state = env.state_dict()
    assert state["level"] == 1
    vector_state = VectorCurriculum(
        gym.make_vec("TextGen-v0", num_envs=2, **ENV), levels=LEVELS, window=4
    ).state_dict()
    target = small_curriculum()
    before, core = target.state_dict(), target.unwrapped.core
    rejected = [
        (small_curriculum(levels=("easy", "hard")).state_dict(), "levels=\\['easy', 'hard'\\]"),
        (small_curriculum(window=8).state_dict(), "window=8"),
        (vector_state, "expected a dict with keys"),
        ("not a state", "got str"),
        ({**state, "level": 3}, "level=3 is not a level index"),
        ({**state, "level": True}, "level=True"),
        ({**state, "level": 2, "results": [1]}, "results=\\[1\\] are not 1 booleans"),
        ({**state, "episodes": -1}, "episodes=-1"),
        ({**state, "episode_level": 5}, "episode_level=5"),
    ]
    for bad, match in rejected:
        with pytest.raises(InvalidArgumentError, match=match) as caught:
            target.load_state_dict(bad)
        assert str(caught.value).startswith("state: ") and "levels=['easy'" in str(caught.value)
        assert target.state_dict() == before and target.unwrapped.core is core
    target.load_state_dict(state)  # the state that fits still loads
    assert target.state_dict() == state


def test_a_vector_curriculums_state_holds_every_slot(answers):
    levels, envs = run_vector("NextStep", answers, right=lambda s: True, steps=25)
    state = envs.state_dict()
    assert state["level"] > 0 and len(state["episode_levels"]) == len(state["restarting"]) == 4
    fresh = VectorCurriculum(
        gym.make_vec("TextGen-v0", num_envs=4, **ENV), levels=LEVELS, window=8, promote_at=0.75
    )
    fresh.load_state_dict(json.loads(json.dumps(state)))
    assert fresh.state_dict() == state
    assert fresh.unwrapped.prompts["train"] == prompts_of(LEVELS[state["level"]])
    three = VectorCurriculum(gym.make_vec("TextGen-v0", num_envs=3, **ENV), levels=LEVELS, window=8)
    with pytest.raises(InvalidArgumentError, match="one per slot.*num_envs=3"):
        three.load_state_dict(state)
    assert three.level == 0


# -- the learners log the schedule -----------------------------------------------------------------


def test_learner_logs_the_curriculum_level_and_success_rate(tmp_path):
    easy, harder = a_task(), Task("frac-a-long", a_task().prompts, a_task().scorer)
    envs = VectorCurriculum(
        gym.make_vec("TextGen-v0", num_envs=4, task=easy, tokenizer="char", max_new_tokens=6),
        levels=[easy, harder],
        demote_at=0.0,
    )
    config = REINFORCEConfig(seed=0, progress=False, log_dir=str(tmp_path), tensorboard=False)
    agent = REINFORCE(make_policy(), envs, config)
    agent.learn(iterations=2)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        assert float(row["curriculum_level"]) == 0.0
        assert 0.0 <= float(row["success_rate"]) <= 1.0
    assert "curriculum_name" not in rows[0]  # text infos are not averaged


def curriculum_learner(checkpoint_dir: str | None = None, **curriculum) -> REINFORCE:
    """REINFORCE on three levels (one task under three names) that move up every 6 episodes
    (``promote_at=0``), so that a resumed run's level shows whether the schedule was restored;
    an episode scoring 0.1 is a success, so the window holds both outcomes."""
    easy = a_task()
    levels = [easy, *(Task(f"frac-a-{k}", easy.prompts, easy.scorer) for k in (2, 3))]
    settings = dict(window=8, min_episodes=6, promote_at=0.0, demote_at=0.0, success_score=0.1)
    envs = VectorCurriculum(
        gym.make_vec("TextGen-v0", num_envs=4, task=easy, tokenizer="char", max_new_tokens=6),
        levels=levels,
        **{**settings, **curriculum},
    )
    config = REINFORCEConfig(
        seed=0, progress=False, tensorboard=False, checkpoint_dir=checkpoint_dir
    )
    return REINFORCE(make_policy(), envs, config)


def test_a_resumed_learner_continues_the_curriculum_exactly(tmp_path):
    straight = curriculum_learner()
    straight.learn(iterations=6)
    first = curriculum_learner(str(tmp_path))
    first.learn(iterations=3)  # checkpoints at the end
    saved = first.envs.state_dict()
    assert saved["level"] == 1 and saved["results"]  # moved up once, the window part full
    state = json.loads((tmp_path / "iter-000003" / "state.json").read_text())
    assert state["env_state"] == saved
    del first

    resumed = curriculum_learner(str(tmp_path))  # fresh objects: the env at level 0
    assert resumed.envs.level == 0
    resumed.resume()
    assert resumed.envs.state_dict() == saved
    assert resumed.envs.unwrapped.core.task_name == "frac-a-2"
    resumed.learn(iterations=3)

    keys = ("curriculum_level", "success_rate", "reward", "loss")
    later = [[row[k] for k in keys] for row in straight.history[3:]]
    assert [[row[k] for k in keys] for row in resumed.history] == later
    assert [row["curriculum_level"] for row in straight.history] == [0, 1 / 7, 1, 8 / 7, 2, 2]
    assert any(row["success_rate"] > 0 for row in straight.history)  # not a window of zeros
    assert resumed.envs.state_dict() == straight.envs.state_dict()
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b), name


def test_resuming_a_curriculum_run_on_another_env_is_refused(tmp_path):
    run = curriculum_learner(str(tmp_path))
    run.learn(iterations=3)
    saved = run.envs.state_dict()
    plain = REINFORCE(make_policy(), make_envs(4), REINFORCEConfig(seed=0, progress=False))
    with pytest.raises(CheckpointError, match="had a state .* has none"):
        plain.resume(tmp_path)
    assert plain.iteration == 0
    other = curriculum_learner(str(tmp_path), window=16)  # another curriculum
    with pytest.raises(CheckpointError, match="does not fit this learner's env.*window=16"):
        other.resume()
    assert other.iteration == 0 and other.envs.level == 0
    assert curriculum_learner(str(tmp_path)).resume().envs.state_dict() == saved
