"""Wrappers: potential-based shaping sums to the sparse score, per-token LM reward, text obs;
every wrapper passes the action mask (and a curriculum's state) on."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from textgym.char_tokenizer import DEFAULT_ALPHABET, EOS_ID, CharTokenizer
from textgym.models import tiny_lm
from textgym.wrappers import (
    Curriculum,
    LMTokenReward,
    PotentialShaping,
    TextObservation,
    VectorCurriculum,
    VectorLMTokenReward,
    VectorPotentialShaping,
)


def _episodes(env, n, seed, rng):
    """Run ``n`` episodes with random letters (some EOS); returns [(rewards, info)]."""
    out = []
    tok = env.unwrapped.tokenizer
    letters = tok("abcde")["input_ids"]
    for k in range(n):
        env.reset(seed=seed + k)
        rewards = []
        while True:
            a = tok.eos_token_id if rng.random() < 0.1 else int(rng.choice(letters))
            _, r, term, trunc, info = env.step(a)
            rewards.append(r)
            if term or trunc:
                out.append((rewards, info))
                break
    return out


@pytest.mark.parametrize("env_id", ["TextGen-Reverse-v0", "TextGen-Keywords-v0"])
def test_shaped_rewards_sum_to_the_sparse_score(env_id):
    rng = np.random.default_rng(0)
    shaped = PotentialShaping(gym.make(env_id))
    for rewards, info in _episodes(shaped, 6, seed=0, rng=rng):
        assert sum(rewards) == pytest.approx(info["score"], abs=1e-5)
        assert len(rewards) == 1 or any(r != 0 for r in rewards[:-1]) or info["score"] == 0


def test_shaping_is_dense_and_matches_the_sparse_env():
    sparse = gym.make("TextGen-Copy-v0")
    shaped = PotentialShaping(gym.make("TextGen-Copy-v0"))
    _, info = shaped.reset(seed=5)
    sparse.reset(seed=5)
    tok = shaped.unwrapped.tokenizer
    target = info["prompt"][:-1]
    rewards = []
    for t in tok(target)["input_ids"] + [tok.eos_token_id]:
        _, r, term, _, info = shaped.step(t)
        _, r_sparse, _, _, info_sparse = sparse.step(t)
        rewards.append(r)
    assert term and info["score"] == info_sparse["score"] == 1.0
    # potential = per-position accuracy of the prefix: each right character earns 1/len
    np.testing.assert_allclose(rewards[:-1], 1 / len(target), atol=1e-6)
    assert sum(rewards) == pytest.approx(1.0)
    gamma = PotentialShaping(gym.make("TextGen-Copy-v0"), gamma=0.9)
    gamma.reset(seed=5)
    assert gamma.step(tok(target)["input_ids"][0])[4]["shaping"] == pytest.approx(0.9 * rewards[0])


def test_custom_potential_and_dense_env_rejected():
    calls = []

    def length_potential(prompts, completions, references):
        calls.append(len(completions))
        return np.array([len(c) for c in completions], dtype=np.float32)

    env = PotentialShaping(gym.make("TextGen-Copy-v0"), potential=length_potential)
    env.reset(seed=0)
    a = env.unwrapped.tokenizer("a")["input_ids"][0]
    assert env.step(a)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sparse"):
        PotentialShaping(gym.make("TextGen-Copy-v0", reward_mode="dense"))
    with pytest.raises(TypeError, match="vector"):
        VectorPotentialShaping(gym.make("TextGen-Copy-v0"))


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_shaping_sums_to_sparse_scores(mode):
    n = 5
    envs = VectorPotentialShaping(
        gym.make_vec("TextGen-Reverse-v0", num_envs=n, autoreset_mode=mode)
    )
    envs.reset(seed=0)
    tok = envs.unwrapped.tokenizer
    letters = np.array(tok("abcde")["input_ids"])
    rng = np.random.default_rng(1)
    running = np.zeros(n)
    finished = 0
    for _ in range(80):
        actions = rng.choice(letters, size=n)
        actions[rng.random(n) < 0.15] = tok.eos_token_id
        _, rewards, term, trunc, infos = envs.step(actions)
        running += rewards
        for s in np.flatnonzero(term | trunc):
            score = (
                infos["final_info"]["score"][s]
                if mode == AutoresetMode.SAME_STEP
                else infos["score"][s]
            )
            assert running[s] == pytest.approx(score, abs=1e-5)
            running[s] = 0.0
            finished += 1
    assert finished >= 20


@pytest.fixture(scope="module")
def ref_lm():
    return tiny_lm(vocab_size=CharTokenizer().vocab_size, seed=1)


def _manual_logprob(model, ids):
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids[:-1]])).logits[0, -1], -1)
    return lp[ids[-1]].item()


def test_lm_token_reward_adds_beta_logprob(ref_lm):
    env = LMTokenReward(gym.make("TextGen-Copy-v0"), model=ref_lm, beta=0.5)
    _, info = env.reset(seed=0)
    tok = env.unwrapped.tokenizer
    prefix = tok(info["prompt"], add_special_tokens=True)["input_ids"]
    for t in tok("abc")["input_ids"]:
        _, r, term, trunc, step_info = env.step(t)
        prefix = prefix + [t]
        expected = _manual_logprob(ref_lm, prefix)
        assert step_info["ref_logprob"] == pytest.approx(expected, abs=1e-4)
        assert r == pytest.approx(0.5 * expected, abs=1e-4)  # sparse env: 0 until the end
    with pytest.raises(ValueError, match="tokenizer"):
        LMTokenReward(gym.make("TextGen-Copy-v0"), model=tiny_lm(vocab_size=50))


def test_vector_lm_token_reward_equals_single(ref_lm):
    n = 3
    envs = VectorLMTokenReward(gym.make_vec("TextGen-Sort-v0", num_envs=n), model=ref_lm, beta=1.0)
    singles = [LMTokenReward(gym.make("TextGen-Sort-v0"), model=ref_lm, beta=1.0) for _ in range(n)]
    envs.reset(seed=4)
    for i, e in enumerate(singles):
        e.reset(seed=4 + i)
    rng = np.random.default_rng(0)
    letters = np.array(CharTokenizer()("abcde")["input_ids"])
    done_before = np.zeros(n, dtype=bool)
    for _ in range(20):
        actions = rng.choice(letters, size=n)
        actions[rng.random(n) < 0.2] = 2
        _, rewards, term, trunc, infos = envs.step(actions)
        for i, e in enumerate(singles):
            if done_before[i]:  # NEXT_STEP: this slot restarted and ignored its action
                assert rewards[i] == 0.0 and not infos["_ref_logprob"][i]
                e.reset()
                continue
            _, r, *_ = e.step(int(actions[i]))
            assert rewards[i] == pytest.approx(r, abs=1e-4)
        done_before = term | trunc


def test_text_observation():
    env = TextObservation(gym.make("TextGen-Copy-v0"))
    obs, info = env.reset(seed=0)
    assert obs == info["prompt"] and obs in env.observation_space
    tok = env.unwrapped.tokenizer
    obs, *_ = env.step(tok("ab")["input_ids"][0])
    assert obs == info["prompt"] + "a"


# -- every wrapper passes the action mask on -------------------------------------------------------

MASK_TOKENIZER = CharTokenizer(DEFAULT_ALPHABET + "\n")  # a task with levels, for the curriculum
MASK_ENV = dict(
    task="letter_counting",
    task_kwargs={"difficulty": "easy"},
    tokenizer=MASK_TOKENIZER,
    max_new_tokens=4,
    max_prompt_tokens=120,
)


@pytest.fixture(scope="module")
def mask_lm():
    return tiny_lm(vocab_size=len(MASK_TOKENIZER), seed=1)


# (name, vector, wrap(env, reference LM)); a stack names its outermost wrapper first.
STACKS = [
    ("PotentialShaping", False, lambda e, lm: PotentialShaping(e)),
    ("VectorPotentialShaping", True, lambda e, lm: VectorPotentialShaping(e)),
    ("LMTokenReward", False, lambda e, lm: LMTokenReward(e, model=lm)),
    ("VectorLMTokenReward", True, lambda e, lm: VectorLMTokenReward(e, model=lm)),
    ("TextObservation", False, lambda e, lm: TextObservation(e)),
    ("Curriculum", False, lambda e, lm: Curriculum(e)),
    ("VectorCurriculum", True, lambda e, lm: VectorCurriculum(e)),
    (
        "LMTokenReward(PotentialShaping)",
        False,
        lambda e, lm: LMTokenReward(PotentialShaping(e), model=lm),
    ),
    (
        "VectorLMTokenReward(VectorPotentialShaping)",
        True,
        lambda e, lm: VectorLMTokenReward(VectorPotentialShaping(e), model=lm),
    ),
    ("TextObservation(Curriculum)", False, lambda e, lm: TextObservation(Curriculum(e))),
    ("PotentialShaping(Curriculum)", False, lambda e, lm: PotentialShaping(Curriculum(e))),
    (
        "VectorPotentialShaping(VectorCurriculum)",
        True,
        lambda e, lm: VectorPotentialShaping(VectorCurriculum(e)),
    ),
]


@pytest.mark.parametrize(("name", "vector", "wrap"), STACKS, ids=[s[0] for s in STACKS])
def test_every_wrapper_passes_the_action_mask_and_a_curriculums_state_on(
    name, vector, wrap, mask_lm
):
    # gym.make puts Gymnasium's own wrappers (OrderEnforcing, ...) below ours: they forward nothing.
    if vector:
        env = gym.make_vec("TextGen-v0", num_envs=3, **MASK_ENV)
    else:
        env = gym.make("TextGen-v0", **MASK_ENV)
    wrapped = wrap(env, mask_lm)
    expected = env.unwrapped.action_masks()
    assert not expected.all()  # the special tokens but EOS are masked: a mask worth passing on
    wrapped.reset(seed=0)
    mask = wrapped.action_masks()
    assert mask.shape == ((3, len(MASK_TOKENIZER)) if vector else (len(MASK_TOKENIZER),))
    assert np.array_equal(mask, expected)
    # A curriculum's state is reachable (and loadable) through the wrappers stacked on it.
    curricula = [w for w in _chain(wrapped) if isinstance(w, (Curriculum, VectorCurriculum))]
    assert hasattr(wrapped, "state_dict") == hasattr(wrapped, "load_state_dict") == bool(curricula)
    if curricula:
        state = wrapped.state_dict()
        assert state == curricula[0].state_dict() and state["level"] == 0
        wrapped.load_state_dict({**state, "level": 2})
        assert curricula[0].level == 2


def _chain(env):
    while True:
        yield env
        if not hasattr(env, "env"):
            return
        env = env.env


def test_a_rollout_through_wrappers_samples_under_the_envs_mask():
    """agents' rollout reads ``envs.action_masks()``: through the wrappers it gets the env's."""
    from agents import LMPolicy, collect_rollout

    envs = VectorPotentialShaping(
        VectorCurriculum(gym.make_vec("TextGen-v0", num_envs=4, **MASK_ENV))
    )
    allowed = [*MASK_TOKENIZER.encode("12"), EOS_ID]
    core_mask = envs.unwrapped.core.action_mask  # narrowed to 3 tokens: sampling cannot miss it
    core_mask[:] = False
    core_mask[allowed] = True
    policy = LMPolicy(tiny_lm(vocab_size=len(MASK_TOKENIZER), seed=0), precision="fp32")
    rollout = collect_rollout(
        policy, envs, seeds=[0, 1, 2, 3], generator=torch.Generator().manual_seed(0)
    )
    tokens = rollout.input_ids[:, rollout.prompt_len :][rollout.mask]
    assert tokens.numel() >= 4 and set(tokens.tolist()) <= set(allowed)
