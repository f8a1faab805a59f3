"""Engines drive the envs through their control points (agents/engines.py), without vLLM.

* The per-token engine under :func:`engine_steps` is today's acting loop, bit for bit.
* A chunked engine equals a one-token-at-a-time engine token for token, for any next-token
  rule: a scripted "LM" that writes whole chunks up to each control point (as vLLM does) and
  the same rule one token per step end in the same trajectories, through tool results a step
  appends, dialogue replies, stop strings, EOS and budgets.

The vLLM engine itself is tested in a second venv: tests/test_engines_vllm.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.engines import Chunk, Engine, PerTokenEngine, VLLMEngine, engine_steps
from agents.policy import LMPolicy
from textgym.char_tokenizer import DEFAULT_ALPHABET, CharTokenizer
from textgym.envs import DialogueVectorEnv, TextGenVectorEnv, ToolUseVectorEnv
from textgym.errors import InvalidArgumentError
from textgym.integrations.vllm import episode_ids
from textgym.models import tiny_lm

CHAR = CharTokenizer(DEFAULT_ALPHABET + "\n")


class ScriptEngine(Engine):
    """Proposes ``next_token(ids after the prompt)`` repeatedly: ``"chunks"`` up to each
    slot's control point (stop and act ids, strings in the text written since the call,
    ``max_tokens``) as vLLM does; ``"overshoot"`` always ``max_tokens`` tokens, past the points
    (the env ends the episode or acts inside the chunk, and the rest must be dropped);
    ``"tokens"`` one token per call."""

    def __init__(self, next_token, mode: str):
        self.next_token, self.mode = next_token, mode
        self.calls = 0

    def propose(self, obs, points, want, *, action_mask=None, deterministic=False, generator=None):
        self.calls += 1
        chunks = [None] * len(want)
        for s in np.flatnonzero(want).tolist():
            n = int(obs["num_generated"][s, 0])
            ids, new = episode_ids(obs, s)[len(episode_ids(obs, s)) - n :], []
            limit = 1 if self.mode == "tokens" else points[s].max_tokens
            while len(new) < limit:
                new.append(self.next_token(ids + new))
                text = CHAR.decode(new, skip_special_tokens=True)
                stop = new[-1] in points[s].token_ids or any(x in text for x in points[s].strings)
                if stop and self.mode == "chunks":
                    break
            chunks[s] = Chunk(new, torch.full((len(new),), -1.0))
        return chunks


def trajectories(engine, envs, seed: int) -> list[list[int]]:
    """Every slot's final ids (prompt and everything after it) after one episode each."""
    obs, _ = envs.reset(seed=seed)
    finals: list[list[int] | None] = [None] * envs.num_envs
    for step in engine_steps(engine, envs, obs):
        for s in np.flatnonzero(step.live & (step.terminated | step.truncated)).tolist():
            finals[s] = episode_ids(step.obs, s)
    return finals


def hashed(choices: str):
    """A deterministic next-token rule: a choice among ``choices`` by a hash of the ids."""
    table = CHAR(choices, add_special_tokens=False)["input_ids"]

    def next_token(ids):
        return table[(sum((i + 1) * t for i, t in enumerate(ids)) * 2654435761 >> 7) % len(table)]

    return next_token


def tool_script(ids):
    """Call the calculator, then answer: the text since the last result decides the next
    character."""
    text = CHAR.decode(ids, skip_special_tokens=True)
    before, result, written = text.rpartition("</result>\n")
    plan = "Answer: 6\n" if result else "<calc>2*3</calc>"
    return CHAR.convert_tokens_to_ids(plan[len(written) % len(plan)])


@pytest.mark.parametrize(
    "make, rule",
    [
        (
            lambda: TextGenVectorEnv(
                num_envs=4, task="copy", tokenizer=CHAR, max_new_tokens=16, stop_strings=["ab"]
            ),
            hashed("abxyz."),
        ),
        (lambda: DialogueVectorEnv(num_envs=4, max_turn_tokens=3), hashed("1234567?")),
    ],
    ids=["text_gen", "dialogue"],
)
def test_chunks_up_to_control_points_equal_one_token_at_a_time(make, rule):
    chunked, single = ScriptEngine(rule, "chunks"), ScriptEngine(rule, "tokens")
    overshoot = ScriptEngine(rule, "overshoot")
    for seed in range(3):
        want = trajectories(single, make(), seed)
        assert trajectories(chunked, make(), seed) == want
        assert trajectories(overshoot, make(), seed) == want
    assert chunked.calls < single.calls / 2  # the chunks were long


def test_tool_results_the_env_appends_are_continued_from():
    def tools():
        return ToolUseVectorEnv(
            num_envs=2,
            tokenizer=CHAR,
            max_new_tokens=80,
            max_result_tokens=30,
            task_kwargs={"n_train": 4},
        )

    got = trajectories(ScriptEngine(tool_script, "chunks"), tools(), 0)
    for ids in got:
        text = CHAR.decode(ids, skip_special_tokens=True)
        assert "<calc>2*3</calc><result>6</result>\nAnswer: 6\n" in text
    assert got == trajectories(ScriptEngine(tool_script, "tokens"), tools(), 0)
    assert got == trajectories(ScriptEngine(tool_script, "overshoot"), tools(), 0)


def test_per_token_engine_is_the_acting_loop_bit_for_bit():
    def envs():
        return DialogueVectorEnv(num_envs=4)

    policy = LMPolicy(tiny_lm(vocab_size=99, seed=3), precision="fp32")
    # Today's loop: act on every slot, ignoring the finished ones, step with all the actions.
    reference, g = envs(), torch.Generator().manual_seed(0)
    obs, _ = reference.reset(seed=5)
    done, want_ids, want_logp = np.zeros(4, bool), [], []
    policy.reset_state()
    while not done.all():
        out = policy.act(obs, reference.action_masks(), generator=g, ignore=done)
        obs, _, term, trunc, _ = reference.step(out.actions)
        want_logp.append(out.logprobs[~torch.from_numpy(done)])
        done |= term | trunc
        want_ids.append(obs["input_ids"].copy())

    engine, stepped, g = PerTokenEngine(policy), envs(), torch.Generator().manual_seed(0)
    engine.reset()
    obs, _ = stepped.reset(seed=5)
    got_ids, got_logp = [], []
    for step in engine_steps(engine, stepped, obs, action_mask=stepped.action_masks(), generator=g):
        got_logp.append(step.logprobs[torch.from_numpy(step.live)])
        got_ids.append(step.obs["input_ids"].copy())
    assert len(got_ids) == len(want_ids)
    for a, b in zip(got_ids, want_ids):
        np.testing.assert_array_equal(a, b)
    torch.testing.assert_close(torch.cat(got_logp), torch.cat(want_logp), rtol=0, atol=0)


def test_vllm_engine_refuses_a_policy_vllm_cannot_run():
    envs = TextGenVectorEnv(num_envs=2, task="copy", tokenizer="char")
    with pytest.raises(InvalidArgumentError, match="position"):
        VLLMEngine(LMPolicy.tiny(envs))


class Recording(PerTokenEngine):
    """The per-token engine, counting its calls."""

    def __init__(self, policy):
        super().__init__(policy)
        self.proposals = self.syncs = 0

    def propose(self, *args, **kwargs):
        self.proposals += 1
        return super().propose(*args, **kwargs)

    def sync_weights(self):
        self.syncs += 1


def test_a_learner_rolls_out_with_its_engine_and_syncs_it_after_every_update():
    from agents.grpo import GRPO, GRPOConfig
    from agents.nlpo import NLPO

    envs = TextGenVectorEnv(num_envs=4, task="copy", tokenizer="char", max_new_tokens=4)
    policy = LMPolicy(tiny_lm(vocab_size=99, seed=0), precision="fp32")
    engine = Recording(policy)
    config = GRPOConfig(group_size=2, lr=1e-3, kl_coef=0.0, progress=False, tensorboard=False)
    agent = GRPO(policy, envs, config, engine=engine)
    agent.train_iteration()
    agent.train_iteration()
    assert engine.proposals >= 2 * 4 and engine.syncs == 2
    with pytest.raises(InvalidArgumentError, match="engine=None"):
        NLPO(policy, envs, engine=engine)


def test_the_folder_vllm_loads_is_the_policys_lm_with_lora_merged(tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from agents.engines import save_for_vllm

    base = tiny_lm(vocab_size=99, seed=0)
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    policy = LMPolicy(peft.get_peft_model(base, config), CHAR, precision="fp32")
    with torch.no_grad():  # a trained adapter: B is zero at init
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2, generator=torch.Generator().manual_seed(1))
    save_for_vllm(policy, str(tmp_path))
    plain = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([[1, 20, 21, 22, 23, 24]])
    with torch.no_grad():
        want = policy.model(input_ids=ids).logits
        got = plain(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not any("lora" in n for n in plain.state_dict())
    assert any("lora_A" in n for n in policy.model.state_dict())  # the adapter is unmerged again
    with torch.no_grad():
        torch.testing.assert_close(policy.model(input_ids=ids).logits, want)
