"""agents.sb3: Stable-Baselines3 / sb3-contrib on textgym envs.

The learning tests use a small copy task (``TextGen-Copy-v0`` with 3-character strings over
``"abc"`` and a 4-character tokenizer alphabet, so V = 8) to fit a CI budget on 2 CPU cores; the
figures for the full ``TextGen-Copy-v0`` are in benchmarks/README.md, with their commands.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecCheckNan,
    VecEnv,
    VecEnvWrapper,
    VecMonitor,
    VecNormalize,
)

import textgym
from agents.sb3 import (
    MASKABLE_MEMORY_NOTE,
    LMActorCriticPolicy,
    SB3VecEnv,
    TokenEmbeddingExtractor,
    TopKActionMasks,
    lm_next_token,
    make_sb3_env,
    maskable_buffer_bytes,
    token_policy_kwargs,
)
from textgym.char_tokenizer import CharTokenizer
from textgym.models import tiny_lm

# -- helpers ------------------------------------------------------------------------------------

SMALL_COPY = dict(
    task_kwargs={"alphabet": "abc", "min_len": 3, "max_len": 3},
    tokenizer=CharTokenizer("abc="),  # V = 4 specials + 4 characters = 8
    max_new_tokens=4,
    max_prompt_tokens=5,
)


def _with_seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _episode_scores(model, env: VecEnv, episodes: int, deterministic: bool) -> float:
    mean, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic)
    return float(mean)


def _random_score(env_kwargs: dict, episodes: int = 400) -> float:
    """Mean score of a uniformly random policy (over all V ids, as SB3's initial policy)."""
    envs = gym.make_vec("TextGen-Copy-v0", num_envs=16, autoreset_mode="SameStep", **env_kwargs)
    envs.reset(seed=123)
    rng = np.random.default_rng(0)
    scores: list[float] = []
    while len(scores) < episodes:
        _, _, _, _, infos = envs.step(rng.integers(envs.single_action_space.n, size=16))
        if "final_info" in infos:
            scores += infos["final_info"]["score"][infos["_final_info"]].tolist()
    return float(np.mean(scores))


@pytest.fixture
def char_vec(char_env_kwargs):
    def make(n: int = 4, **kw):
        return SB3VecEnv(
            textgym.TextGenVectorEnv(
                num_envs=n, autoreset_mode="SameStep", **{**char_env_kwargs, **kw}
            )
        )

    return make


# -- import -------------------------------------------------------------------------------------


def test_import_agents_does_not_import_sb3():
    code = "import agents, sys; assert 'stable_baselines3' not in sys.modules, 'sb3 imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- features extractor -------------------------------------------------------------------------


def test_extractor_casts_float_ids_back_and_ignores_padding(char_env_kwargs):
    env = textgym.TextGenEnv(**char_env_kwargs)
    extractor = TokenEmbeddingExtractor(env.observation_space, embed_dim=16)
    assert extractor.features_dim == 32 and extractor.vocab_size == 99
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(20)
    as_long = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
    as_float = {k: v.float() for k, v in as_long.items()}  # what SB3's buffers hand back
    torch.testing.assert_close(extractor(as_long), extractor(as_float))
    # Whatever sits under attention_mask == 0 is ignored.
    noisy = {k: v.clone() for k, v in as_long.items()}
    pad = noisy["attention_mask"] == 0
    noisy["input_ids"][pad] = torch.randint(4, 99, (int(pad.sum()),))
    torch.testing.assert_close(extractor(as_long), extractor(noisy))


def test_policy_kwargs_build_ppo_a2c_dqn(char_env_kwargs):
    env = make_sb3_env("TextGen-v0", n_envs=2, **char_env_kwargs)
    # Small rollouts: with SB3's defaults PPO alone collects 2 x 2048 steps and runs 640
    # minibatches for learn(64). Building the model and one update is all this test needs.
    small = {
        PPO: dict(n_steps=16, batch_size=32, n_epochs=1),
        A2C: dict(n_steps=5),
        DQN: dict(learning_starts=0, buffer_size=500),
    }
    for algo, cls in (("ppo", PPO), ("a2c", A2C), ("dqn", DQN)):
        kwargs = token_policy_kwargs(algo, embed_dim=16)
        model = cls("MultiInputPolicy", env, policy_kwargs=kwargs, **small[cls])
        net = getattr(model.policy, "q_net", model.policy)
        assert isinstance(net.features_extractor, TokenEmbeddingExtractor)
        if algo == "ppo":  # SB3's orthogonal init slowed PPO down and made it unlearn
            assert model.policy.ortho_init is False
        model.learn(64)
        action, _ = model.predict(env.reset())
        assert action.shape == (2,)
    with pytest.raises(ValueError, match="algo"):
        token_policy_kwargs("sac")


# -- VecEnv adapter -----------------------------------------------------------------------------


def test_adapter_needs_same_step_autoreset(char_env_kwargs):
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(textgym.TextGenVectorEnv(num_envs=2, **char_env_kwargs))
    envs = gym.make_vec("TextGen-v0", num_envs=2, autoreset_mode=AutoresetMode.SAME_STEP)
    assert isinstance(SB3VecEnv(envs), VecEnv)


def test_adapter_matches_dummy_vec_env(char_env_kwargs):
    """Same data as SB3's own DummyVecEnv over single envs: obs, rewards, dones, infos,
    terminal_observation, TimeLimit.truncated, reset infos; seeds s + i."""
    n = 3
    ours = SB3VecEnv(
        textgym.TextGenVectorEnv(num_envs=n, autoreset_mode="SameStep", **char_env_kwargs)
    )
    ref = DummyVecEnv([lambda: textgym.TextGenEnv(**char_env_kwargs) for _ in range(n)])
    ours.seed(7)
    ref.seed(7)
    a, b = ours.reset(), ref.reset()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert ours.reset_infos == ref.reset_infos
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(60):
        actions = rng.integers(99, size=n)
        actions[rng.random(n) < 0.15] = 2  # EOS: some episodes terminate, others truncate
        oa, ra, da, ia = ours.step(actions)
        ob, rb, db, ib = ref.step(actions)
        assert ra.dtype == np.float32 and da.dtype == np.bool_ and isinstance(ia, list)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(da, db)
        for key in oa:
            np.testing.assert_array_equal(oa[key], ob[key])
        for i in range(n):
            assert ia[i].keys() == ib[i].keys()
            for key, value in ib[i].items():
                if key == "terminal_observation":
                    for k in value:
                        np.testing.assert_array_equal(ia[i][key][k], value[k])
                else:
                    assert ia[i][key] == value, key
            if da[i]:
                ends["truncated" if ia[i]["TimeLimit.truncated"] else "terminated"] += 1
                # The final observation holds the whole completion; the returned one is fresh.
                term = ia[i]["terminal_observation"]
                assert term["num_generated"][0] == ia[i]["num_tokens"] >= 1
                assert oa["num_generated"][i, 0] == 0
        assert ours.reset_infos == ref.reset_infos
    assert ends["terminated"] and ends["truncated"]


def test_adapter_seeding_is_reproducible(char_vec):
    env = char_vec(n=4)
    env.seed(3)
    first = env.reset()
    again = env.reset()  # the seed was used once: a new draw
    env.seed(3)
    third = env.reset()
    np.testing.assert_array_equal(first["input_ids"], third["input_ids"])
    assert env.seed(5) == [5, 6, 7, 8]
    assert again["input_ids"].shape == first["input_ids"].shape


def test_adapter_attrs_methods_options(char_vec):
    env = char_vec(n=3)
    env.reset()
    assert env.get_attr("num_envs") == [3, 3, 3]
    assert env.get_attr("render_mode", indices=[1]) == [None]
    assert env.has_attr("action_masks") and not env.has_attr("no_such_attribute")
    masks = np.stack(env.env_method("action_masks"))
    assert masks.shape == (3, 99) and masks.dtype == np.bool_
    assert not masks[:, 0].any() and masks[:, 2].all()  # pad masked, EOS allowed
    assert len(env.env_method("action_masks", indices=[0, 2])) == 2
    texts = env.env_method("render")
    assert len(texts) == 3 and "prompt:" in texts[0]
    env.set_attr("copy", True)
    with pytest.raises(ValueError, match="indices"):
        env.set_attr("copy", True, indices=[0])
    assert env.env_is_wrapped(gym.Wrapper) == [False, False, False]
    env.set_options({"prompt": "zzz"})
    env.reset()
    assert [i["prompt"] for i in env.reset_infos] == ["zzz"] * 3
    env.set_options([{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}])
    env.reset()
    assert [i["prompt"] for i in env.reset_infos] == ["a", "b", "c"]
    env.close()


def test_adapter_passes_sb3_vec_env_checks(char_vec):
    """SB3 2.9 ships no VecEnv checker; these are the checks of its own VecEnv wrappers and
    helpers (NaN/inf check, monitor, normalisation, evaluation, SB3's algorithm setup)."""
    env = VecCheckNan(char_vec(n=4), raise_exception=True, check_inf=True)
    env = VecNormalize(VecMonitor(env), norm_obs=False, norm_reward=True)
    obs = env.reset()
    assert set(obs) == {"input_ids", "attention_mask", "num_generated"}
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(40):
        obs, rewards, dones, infos = env.step(rng.integers(99, size=4))
        assert obs["input_ids"].shape == (4, 16) and rewards.shape == (4,)
        episodes += sum("episode" in info for info in infos)
    assert episodes > 0
    model = PPO(
        "MultiInputPolicy",
        env,
        n_steps=16,
        batch_size=32,
        n_epochs=1,
        seed=0,
        policy_kwargs=token_policy_kwargs(embed_dim=16),
    )
    model.learn(64)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=4)
    assert np.isfinite(mean)


def test_make_sb3_env_and_native_speedup(char_env_kwargs):
    env = make_sb3_env("TextGen-v0", n_envs=8, seed=0, **char_env_kwargs)
    assert isinstance(env, VecMonitor) and isinstance(env.venv, SB3VecEnv)
    assert isinstance(env.unwrapped.venv, textgym.TextGenVectorEnv)
    assert env.num_envs == 8
    obs = env.reset()
    assert obs["input_ids"].shape == (8, 16)


# -- MaskablePPO --------------------------------------------------------------------------------


class _AssertMasked(VecEnvWrapper):
    """Fails if an action is taken that the current action masks forbid."""

    def __init__(self, venv):
        super().__init__(venv)
        self.checked = 0

    def reset(self):
        return self.venv.reset()

    def step_async(self, actions):
        masks = np.stack(self.venv.env_method("action_masks"))
        allowed = masks[np.arange(len(actions)), np.asarray(actions)]
        assert allowed.all(), f"masked action taken: {actions[~allowed]}"
        self.checked += len(actions)
        self.venv.step_async(actions)

    def step_wait(self):
        return self.venv.step_wait()


def test_memory_note():
    assert maskable_buffer_bytes(49_152, 128, 16) == 402_653_184
    assert "403 MB" in MASKABLE_MEMORY_NOTE


def test_maskable_ppo_never_takes_a_masked_action(char_env_kwargs):
    sb3_contrib = pytest.importorskip("sb3_contrib")
    env = _AssertMasked(make_sb3_env("TextGen-v0", n_envs=4, seed=0, **char_env_kwargs))
    model = sb3_contrib.MaskablePPO(
        "MultiInputPolicy",
        env,
        n_steps=32,
        batch_size=64,
        n_epochs=1,
        seed=0,
        policy_kwargs=token_policy_kwargs("maskableppo", embed_dim=16),
    )
    model.learn(256)
    assert env.checked >= 256


def test_topk_masks_follow_reference_lm(char_env_kwargs):
    sb3_contrib = pytest.importorskip("sb3_contrib")
    lm = tiny_lm(vocab_size=99, n_layer=1, n_embd=32, seed=1)
    base = make_sb3_env("TextGen-v0", n_envs=4, seed=0, **char_env_kwargs)
    topk = TopKActionMasks(base, lm, k=3)
    obs = topk.reset()
    masks = topk.action_masks()
    assert masks.shape == (4, 99) and (masks.sum(1) == 3).all()
    assert not masks[:, 0].any()  # the env's own mask still applies (pad)
    with torch.no_grad():
        logits, _ = lm_next_token(
            lm, torch.as_tensor(obs["input_ids"]), torch.as_tensor(obs["attention_mask"])
        )
    logits[:, ~base.env_method("action_masks")[0]] = -torch.inf
    expected = logits.topk(3, dim=-1).indices.numpy()
    for i in range(4):
        assert set(np.flatnonzero(masks[i])) == set(expected[i])
    env = _AssertMasked(topk)
    model = sb3_contrib.MaskablePPO(
        "MultiInputPolicy",
        env,
        n_steps=16,
        batch_size=32,
        n_epochs=1,
        seed=0,
        policy_kwargs=token_policy_kwargs("maskableppo", embed_dim=16),
    )
    model.learn(64)
    assert env.checked >= 64


# -- learning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_sb3_learns_small_copy(algo):
    """SB3 PPO / A2C + TokenEmbeddingExtractor learn a small copy task clearly above random."""
    torch.set_num_threads(1)
    _with_seed_everything(0)
    kwargs = dict(SMALL_COPY, reward_mode="dense")
    env = make_sb3_env("TextGen-Copy-v0", n_envs=16, seed=0, **kwargs)
    common = dict(learning_rate=3e-3, gamma=1.0, ent_coef=0.01, seed=0, verbose=0)
    if algo == "ppo":
        model = PPO(
            "MultiInputPolicy",
            env,
            n_steps=32,
            batch_size=128,
            n_epochs=4,
            policy_kwargs=token_policy_kwargs("ppo"),
            **common,
        )
        budget = 30_000
    else:
        model = A2C(
            "MultiInputPolicy", env, n_steps=8, policy_kwargs=token_policy_kwargs("a2c"), **common
        )
        budget = 60_000
    model.learn(budget)
    eval_env = make_sb3_env("TextGen-Copy-v0", n_envs=16, seed=1, **SMALL_COPY)
    score = _episode_scores(model, eval_env, 160, deterministic=True)
    random = _random_score(SMALL_COPY)
    print(f"{algo}: {score:.3f} after {budget} steps (random {random:.3f})")
    assert score >= 0.6 and score > random + 0.4


def test_lm_actor_critic_policy_improves_tiny_lm(char_task):
    """SB3's PPO fine-tunes a tiny LM through LMActorCriticPolicy: the fraction of 'a' rises."""
    torch.set_num_threads(1)
    kwargs = dict(task=char_task, tokenizer="char", max_new_tokens=6, max_prompt_tokens=10)
    lm = tiny_lm(vocab_size=99, n_layer=1, n_embd=32, seed=0)
    env = make_sb3_env("TextGen-v0", n_envs=8, seed=0, **kwargs)
    model = PPO(
        LMActorCriticPolicy,
        env,
        n_steps=32,
        batch_size=64,
        n_epochs=4,
        learning_rate=3e-3,
        gamma=1.0,
        ent_coef=0.0,
        seed=0,
        policy_kwargs={"model": lm},
    )
    assert model.policy.lm is lm
    assert {id(p) for p in lm.parameters()} <= {
        id(p) for g in model.policy.optimizer.param_groups for p in g["params"]
    }
    eval_env = make_sb3_env("TextGen-v0", n_envs=8, seed=1, **kwargs)
    before = _episode_scores(model, eval_env, 64, deterministic=False)
    model.learn(4_096)
    after = _episode_scores(model, eval_env, 64, deterministic=False)
    print(f"tiny LM: mean 'a' fraction {before:.3f} -> {after:.3f}")
    assert after > before + 0.3


def test_lm_policy_matches_lm_logits(char_env_kwargs):
    lm = tiny_lm(vocab_size=99, n_layer=1, n_embd=32, seed=0)
    env = make_sb3_env("TextGen-v0", n_envs=2, seed=0, **char_env_kwargs)
    model = PPO(LMActorCriticPolicy, env, n_steps=8, batch_size=8, policy_kwargs={"model": lm})
    obs = env.reset()
    tensors, _ = model.policy.obs_to_tensor(obs)
    dist = model.policy.get_distribution(tensors)
    with torch.no_grad():
        probs = dist.distribution.probs
        ids, mask = tensors["input_ids"], tensors["attention_mask"]
        for i in range(2):
            real = ids[i][mask[i] > 0][None]
            expected = torch.softmax(lm(real).logits[0, -1], -1)
            torch.testing.assert_close(probs[i], expected, atol=1e-5, rtol=1e-4)
        values = model.policy.predict_values(tensors)
        assert values.shape == (2, 1)
        floats = {k: v.float() for k, v in tensors.items()}  # what the rollout buffer returns
        v2, logp, ent = model.policy.evaluate_actions(floats, torch.tensor([5, 6]))
        torch.testing.assert_close(v2, values)
        assert logp.shape == (2,) and ent.shape == (2,)
