"""LMPolicy: a causal LM with a value head, acting on textgym observations with a KV cache.

Two jobs, each built on a module of its own:

1. **Token statistics for learning** (:meth:`LMPolicy.token_stats`): the log-prob of each chosen
   completion token, the entropy of the policy there and the value, by teacher forcing. The LM
   head runs on completion positions only, a chunk of rows at a time (``token_stats.py``).
2. **Acting through the env** (:meth:`LMPolicy.act`): the next token of every slot of a vector
   env, through one batched KV cache with a row per env slot (``acting_cache.py``), sampled with
   temperature, top-k, top-p and the env's action mask (``sampling.py``).

The LM head runs in fp32 on both paths, also under bf16 autocast (``precision.py``): acting
samples from, and the update scores, fp32 logits of the same hidden states (a bf16 head rounds
every logit to 3 significant digits, ~0.02 nats per token for SmolLM2). The bf16 trunk itself
still rounds differently for different shapes (KV-cached steps vs full sequences, or two batch
sizes), so the learners rescore old and reference log-probs by the update's own forward (see
:meth:`agents.base.Learner.prepare`) and log the acting path's remaining gap as ``logprob_gap``.

The distribution the learners optimise is ``softmax(logits / temperature)`` over the whole
vocabulary, restricted to a ``support`` where there is one. The env's action mask only filters
*sampling* (the recorded log-probs are of the unmasked distribution). A ``support`` restricts the
distribution itself: acting and :meth:`LMPolicy.token_stats` both renormalise over it, so PPO's
importance ratios start at exactly 1. Two things give one: NLPO's mask, and **top-k / top-p**.
Top-k/top-p change the distribution actions are actually drawn from, so :meth:`LMPolicy.act`
records each step's kept set as the support (with the env's mask applied first) and the
renormalised log-prob; the rollout keeps the sets (packed, ``V / 8`` bytes per token) and the
update scores that same truncated distribution. Training is then on-policy for the sampler, not
for the full softmax: the gradient moves mass within each step's kept set, and the KL to the
reference is that of the truncated policy. (TRL and vLLM-based trainers instead score the
unfiltered distribution, a known off-policy bias: with top-p 0.9, 8.6% of SmolLM2's mass lies
outside the sampled set.) With top-k = 0 and top-p = 1 (the defaults) nothing of this applies.

Over 600 lines because one concept needs them: the :class:`LMPolicy`, whose construction,
reference model, scoring and acting all read the same model, value head and settings; the
machinery they use lives in the modules named above.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.acting_cache import ActingCache, new_dynamic_cache, resolve_kv_cache, unique_rows
from agents.precision import resolve_compile, resolve_precision
from agents.sampling import sample_tokens, sampling_support
from agents.token_stats import TokenStats, pack_support, token_logprobs
from textgym.models import position_ids

# The from-scratch settings of LMPolicy.tiny: a high learning rate (a small model at init scale
# 0.02), no KL penalty (the untrained reference means nothing), and a few hundred episodes per
# update (with tens, the policy-gradient noise collapses the policy to one constant string
# before it learns to read the prompt). PPO's target_kl off: the large steps are wanted here.
TINY_LEARNER_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "kl_coef": 0.0,
    "target_kl": None,
    "minibatch_size": 64,
    "update_epochs": 2,
    "episodes_per_update": 256,
}


@dataclass
class ActOutput:
    """What :meth:`LMPolicy.act` returns for one vector-env step."""

    actions: np.ndarray  # (N,) int64 token ids, ready for envs.step
    logprobs: torch.Tensor  # (N,) log-prob of each action under softmax(logits / temperature)
    values: torch.Tensor  # (N,) value of each slot's current state
    # (N, ceil(V / 8)) uint8: the packed support the log-probs are normalised over (act's support)
    support: torch.Tensor | None = None


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def _head_weight_and_bias(head: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The LM head's effective ``(weight, bias)``: what ``head(hidden)`` computes, as one linear
    map. A peft LoRA adapter on the head (active and not merged) adds its ``B @ A * scaling``
    (and ``lora_B``'s bias with ``lora_bias=True``), differentiably, so that the update scores
    what acting sampled from and the head's adapter gets its gradient. The reference (adapter
    switched off) gets the base weights."""
    weight, bias = head.weight, getattr(head, "bias", None)
    lora_a = getattr(head, "lora_A", None)
    if lora_a is None or getattr(head, "disable_adapters", False) or getattr(head, "merged", False):
        return weight, bias
    for name in head.active_adapters:
        if name not in lora_a:
            continue
        if name in getattr(head, "lora_variant", {}):  # DoRA & co. are not a plain B @ A delta
            raise ValueError(
                f"LoRA variant {type(head.lora_variant[name]).__name__} on the LM head is not "
                f"supported (its output is not base + B @ A); leave the head out of "
                f"target_modules or use plain LoRA (use_dora=False)"
            )
        with torch.autocast(weight.device.type, enabled=False):  # the delta in fp32
            weight = weight + head.get_delta_weight(name).to(weight.dtype)
            if head.lora_bias.get(name, False):
                delta_b = head.lora_B[name].bias * head.scaling[name]
                bias = delta_b if bias is None else bias + delta_b
    return weight, bias


class PositionEmbeddings(nn.Module):
    """Learned embeddings of where a token stands, added to a causal LM's input embeddings.

    Two tables: the token's position (the position id, counted from the first real prompt
    token) and its completion step (0 for the prompt; ``1 + t`` for the token that predicts
    completion token ``t``, i.e. the prompt's last token for ``t = 0``; :meth:`LMPolicy.step_ids`).
    A causal LM trained from scratch has only relative offsets (RoPE) to go by, so "write the
    prompt's t-th character at step t" (copy, reverse, sort) hides behind an offset that varies
    with the prompt's length; with both tables the token at step ``t`` can attend to position
    ``t`` directly, as the query token of SB3's :class:`~agents.sb3.TokenEmbeddingExtractor`
    does. Indices past the tables share their last row. Initialised like token embeddings
    (normal, std 0.02, from ``seed``), not zeros: two zero tables have no gradient to align.
    """

    def __init__(self, size: int, hidden_size: int, *, seed: int = 0):
        super().__init__()
        self.steps = nn.Embedding(size + 2, hidden_size)
        self.positions = nn.Embedding(size + 2, hidden_size)
        generator = torch.Generator().manual_seed(seed + 1)
        for table in (self.steps, self.positions):
            nn.init.normal_(table.weight, std=0.02, generator=generator)

    def forward(self, steps: torch.Tensor | np.ndarray, position_ids: torch.Tensor) -> torch.Tensor:
        steps = torch.as_tensor(steps, device=position_ids.device)
        top = self.steps.num_embeddings - 1
        return self.steps(steps.clamp(0, top)) + self.positions(position_ids.clamp(0, top))


class LMPolicy(nn.Module):
    """A causal LM (actor) and a linear value head (critic) on the same trunk.

    Args:
        model: any transformers causal LM (e.g. from :func:`textgym.models.load_lm`), optionally a
            peft LoRA model. Kept in eval mode (no dropout): RL fine-tuning wants the sampling
            distribution and the trained one to be the same.
        tokenizer: kept for decoding and convenience (optional).
        precision: ``"auto"`` (bf16 autocast where bf16 is native: CUDA, CPUs with AMX or
            AVX512-BF16; fp32 elsewhere), ``"fp32"`` or ``"bf16"``. Weights stay fp32 (they are
            the optimizer's master copy); only matmuls run in bf16.
        temperature, top_k, top_p: sampling defaults (1.0, 0 = off, 1.0 = off). Top-k/top-p make
            acting record each step's kept set, and the update scores the truncated distribution
            (see the module docstring).
        chunk_size: rows per chunk of the log-prob path (default
            ``token_stats.CHUNK_ELEMENTS // V``).
        compile: ``torch.compile`` the decoder (see :func:`~agents.precision.resolve_compile`;
            ``"auto"``: on CUDA only). It compiles the full-sequence forwards of the update
            (policy and reference, ``dynamic=True`` since minibatch shapes vary) and, with the
            static cache, the one-token decoding step (fixed shapes). Prefills stay eager.
        kv_cache: the acting cache (:class:`~agents.acting_cache.ActingCache`), ``"dynamic"``
            (grows by a column per step, cropped on the left) or ``"static"`` (preallocated
            ``P + T`` plus slack columns, compacted in place when full); ``"auto"``: static on
            CUDA (see :func:`~agents.acting_cache.resolve_kv_cache`). Both give the same actions
            and log-probs.
        value_init_std: std of the value head's initial weights (default 0: the untrained
            critic predicts 0, so it neither dominates the loss nor perturbs the trunk, and with
            no reward there is no value gradient either).
        position_embeddings: add learned embeddings of each token's position and completion
            step to the LM's input embeddings (:class:`PositionEmbeddings`), for observations of
            up to this many tokens (0: off). For models trained from scratch
            (:meth:`LMPolicy.tiny`); the reference keeps a frozen copy of the initial ones.
        seed: seeds the value head's initialisation (the global RNG is not used).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        *,
        precision: str = "auto",
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        chunk_size: int | None = None,
        compile: bool | str = "auto",
        kv_cache: str = "auto",
        value_init_std: float = 0.0,
        position_embeddings: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 (use deterministic=True for greedy), got {temperature}"
            )
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p)
        self.chunk_size = chunk_size
        config = (
            model.config.get_text_config()
            if hasattr(model.config, "get_text_config")
            else model.config
        )
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.value_head = nn.Linear(config.hidden_size, 1)
        nn.init.normal_(
            self.value_head.weight,
            std=value_init_std,
            generator=torch.Generator().manual_seed(seed),
        )
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(self.device)  # fp32 whatever the model's dtype
        if position_embeddings < 0:
            raise ValueError(
                f"position_embeddings must be >= 0 (0: off), got {position_embeddings}"
            )
        self.position_embeddings: PositionEmbeddings | None = None
        if position_embeddings:
            self.position_embeddings = PositionEmbeddings(
                position_embeddings, config.hidden_size, seed=seed
            ).to(self.device)
        self._reference_active = False
        self.precision = precision
        self.amp_dtype = resolve_precision(precision, self.device)
        decoder, _ = _decoder_and_head(model)
        params = inspect.signature(decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.compile_backend = resolve_compile(compile, self.device)
        # The acting KV cache and the compiled wrappers (they share the decoders' parameters):
        # plain attributes, not submodules, so that checkpoints do not see them.
        kind = resolve_kv_cache(kv_cache, self.device, decoder.config)
        self.acting_cache = ActingCache(kind, decoder.config)
        self._compiled: dict[tuple[int, bool], tuple[nn.Module, Any]] = {}
        self.ref_model: nn.Module | None = None
        self.ref_positions: PositionEmbeddings | None = None
        # Settings a learner built without a config starts from (see LearnerConfig.for_policy).
        self.learner_defaults: dict[str, Any] = {}
        # What the KL reference is, in words (checkpoints record it with reference_record()).
        self.reference_origin: str | None = None
        self._mask_key: np.ndarray | None = None
        self._mask_bias: torch.Tensor | None = None

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "smollm2-135m",
        *,
        device: str | torch.device | None = None,
        lora: Any = None,
        **kwargs: Any,
    ) -> LMPolicy:
        """Load a model with :func:`textgym.models.load_lm` (fp32 master weights) and wrap it.

        ``lora``: a ``peft.LoraConfig`` or a dict of its arguments (e.g. ``{"r": 16,
        "target_modules": "all-linear"}``) to train LoRA adapters instead of all weights; the
        reference model is then the same weights with the adapter switched off. Other keyword
        arguments go to :class:`LMPolicy`.
        """
        from textgym.models import load_lm

        model, tokenizer = load_lm(name_or_path, device=device, dtype=torch.float32)
        if lora is not None:
            from peft import LoraConfig, get_peft_model  # optional dependency

            if isinstance(lora, dict):
                lora = LoraConfig(task_type="CAUSAL_LM", **lora)
            model = get_peft_model(model, lora)
        return cls(model, tokenizer, **kwargs)

    def step_ids(self, columns: np.ndarray, prompt_len: np.ndarray) -> np.ndarray | None:
        """The completion step of each column of observations whose prompt ends at column
        ``prompt_len`` (per row): 0 for the prompt, ``1 + t`` for column ``prompt_len - 1 + t``
        (which predicts completion token ``t``). None without position embeddings."""
        if self.position_embeddings is None:
            return None
        return np.maximum(columns[None, :] - np.asarray(prompt_len)[:, None] + 2, 0)

    @classmethod
    def tiny(
        cls,
        envs: Any,
        *,
        n_layer: int = 2,
        n_embd: int = 64,
        n_head: int = 4,
        seed: int = 0,
        **kwargs: Any,
    ) -> LMPolicy:
        """A small randomly initialised LM for ``envs`` (a textgym env or vector env), to train
        from scratch: :func:`textgym.models.tiny_lm` sized to the env's vocabulary and special
        tokens, with :class:`PositionEmbeddings` covering the observation, seeded. Learners built
        without a config use :data:`TINY_LEARNER_DEFAULTS` with it
        (``PPO(LMPolicy.tiny(envs), envs)``; change one with
        ``PPOConfig.for_policy(policy, seed=1)``). Other keyword arguments go to :class:`LMPolicy`
        (``precision``, ``temperature``, ...)."""
        from textgym.models import tiny_lm

        tok = envs.tokenizer
        space = getattr(envs, "single_action_space", None) or envs.action_space
        width = int(envs.observation_space["input_ids"].shape[-1])
        lm = tiny_lm(
            vocab_size=int(space.n),
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            seed=seed,
            max_positions=max(512, width),
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        kwargs.setdefault("position_embeddings", width)
        policy = cls(lm, tok, seed=seed, **kwargs)
        policy.learner_defaults = dict(TINY_LEARNER_DEFAULTS)
        return policy

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def kv_cache(self) -> str:
        """The kind of the acting KV cache: ``"dynamic"`` or ``"static"``."""
        return self.acting_cache.kind

    @property
    def is_peft(self) -> bool:
        return hasattr(self.model, "disable_adapter")

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast if this policy's precision asks for it, else a no-op."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def ensure_reference(self) -> None:
        """Set up the frozen reference for KL and fluency: a deepcopy of the LM in eval mode
        without gradients, or nothing with peft (the adapter is switched off instead).

        With peft, every trained parameter must belong to the adapter, since switching the
        adapter off must give the untrained model back: LoRA's ``bias="all"``/``"lora_only"``
        (trained base biases) or base weights unfrozen by hand would move the KL reference with
        training, so they raise ValueError."""
        if self.position_embeddings is not None and self.ref_positions is None:
            frozen = copy.deepcopy(self.position_embeddings).requires_grad_(False)
            object.__setattr__(self, "ref_positions", frozen)  # not trained, not checkpointed
        if self.is_peft:
            self._check_peft_reference()
            self.reference_origin = "the policy with its peft adapter switched off (base weights)"
        elif self.ref_model is None:
            ref = copy.deepcopy(self.model).eval()
            ref.requires_grad_(False)
            # Not a submodule: the reference is neither trained nor checkpointed.
            object.__setattr__(self, "ref_model", ref)
            if self.reference_origin is None:
                self.reference_origin = "a frozen copy of the policy when the learner was built"

    def _adapter_names(self) -> set[str]:
        return set(getattr(self.model, "peft_config", {}) or {})

    def _check_peft_reference(self) -> None:
        configs = getattr(self.model, "peft_config", {}) or {}
        for name, config in configs.items():
            bias = getattr(config, "bias", "none")
            if bias != "none":
                raise ValueError(
                    f"LoRA adapter {name!r} has bias={bias!r}: it trains the base model's biases, "
                    f"which switching the adapter off does not undo, so the KL reference would "
                    f"move with training; use LoraConfig(bias='none') (peft's default), or "
                    f"lora_bias=True for a bias that belongs to the adapter"
                )
        adapters = self._adapter_names()
        outside = [
            n
            for n, p in self.model.named_parameters()
            if p.requires_grad and not any(f".{a}." in f".{n}." for a in adapters)
        ]
        if outside:
            raise ValueError(
                f"{len(outside)} trainable parameter(s) are not part of the peft adapter "
                f"(e.g. {outside[:3]}): switching the adapter off would not undo their training, "
                f"so the KL reference would move; freeze them (requires_grad_(False)) or list "
                f"their modules in LoraConfig(modules_to_save=[...])"
            )

    def reference_record(self) -> dict[str, str]:
        """What the KL reference is, for checkpoints: ``origin`` (in words) and ``fingerprint``,
        a hash of the reference's weights (each tensor's name, shape, dtype and up to 4,096
        evenly spaced elements; with peft, the base weights the adapter-off model uses; the
        frozen position embeddings, if the policy has them).
        :meth:`~agents.base.Learner.resume` compares it with the resumed learner's."""
        import hashlib

        self.ensure_reference()
        digest = hashlib.sha256()
        adapters = self._adapter_names()
        with torch.no_grad(), self._reference() as ref:
            tensors = list(ref.named_parameters())
            if self.ref_positions is not None:  # the reference's own position embeddings
                tensors += [(f"positions.{n}", t) for n, t in self.ref_positions.named_parameters()]
            for name, tensor in tensors:
                if any(f".{a}." in f".{name}." for a in adapters):
                    continue  # the adapter's own weights: switched off in the reference
                flat = tensor.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 4096)][:4096].contiguous().cpu()
                digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
                digest.update(sample.view(torch.uint8).numpy().tobytes())
        return {"origin": str(self.reference_origin), "fingerprint": digest.hexdigest()[:24]}

    @contextlib.contextmanager
    def _reference(self) -> Iterator[nn.Module]:
        if self.ref_model is None and not self.is_peft:
            raise RuntimeError("no reference model: call policy.ensure_reference() first")
        self._reference_active = True  # _hidden uses the reference's position embeddings
        try:
            if self.ref_model is not None:
                yield self.ref_model
            else:
                with self.model.disable_adapter():
                    yield self.model
        finally:
            self._reference_active = False

    # -- trunk, value ----------------------------------------------------------------------------

    def _hidden(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
        *,
        step: bool = False,
        steps: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Last-layer hidden states. Compiled (if enabled) for full sequences without a cache and,
        ``step=True``, for the static cache's one-token step; eager for prefills. ``steps``: the
        completion step of each input token (see :meth:`step_ids`), for the position embeddings
        if the policy has them (the reference's frozen copy while scoring the reference)."""
        decoder, _ = _decoder_and_head(model)
        inputs = dict(
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **{self._cache_kw: cache},
        )
        where = self.ref_positions if self._reference_active else self.position_embeddings
        if where is not None and steps is not None:
            embeds = decoder.get_input_embeddings()(input_ids)
            inputs["inputs_embeds"] = embeds + where(steps, position_ids).to(embeds.dtype)
        else:
            inputs["input_ids"] = input_ids
        if self.compile_backend and (cache is None or step):
            compiled = self._compiled_decoder(decoder, dynamic=cache is None)
            try:
                return compiled(**inputs).last_hidden_state
            except torch._dynamo.exc.TorchDynamoException as error:  # raised before running
                # compile="auto" is on for every CUDA user: a model dynamo cannot compile must
                # still train, so say so once and go on eagerly.
                warnings.warn(
                    f"torch.compile ({self.compile_backend}) failed, running eagerly from now on "
                    f"(pass compile=False to skip the attempt): {type(error).__name__}: {error}",
                    stacklevel=2,
                )
                self.compile_backend = None
        return decoder(**inputs).last_hidden_state

    def _compiled_decoder(self, decoder: nn.Module, dynamic: bool) -> Any:
        key = (id(decoder), dynamic)
        if key not in self._compiled:  # keep the decoder too, so that its id is never reused
            compiled = torch.compile(decoder, backend=self.compile_backend, dynamic=dynamic)
            self._compiled[key] = (decoder, compiled)
        return self._compiled[key][1]

    def _value(self, hidden: torch.Tensor) -> torch.Tensor:
        # Elementwise in fp32 rather than a Linear: autocast would run a Linear in bf16.
        return (hidden.float() * self.value_head.weight[0]).sum(-1) + self.value_head.bias[0]

    def _logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The acting path's fp32 logits: the LM head runs in fp32 even under bf16 autocast, as
        in :func:`~agents.token_stats.token_logprobs` (the update path), so that both score the
        same distribution (a bf16 head alone moves log-probs by ~0.02 nats per token for
        SmolLM2)."""
        _, head = _decoder_and_head(model)
        weight, bias = _head_weight_and_bias(head)
        with torch.autocast(hidden.device.type, enabled=False):
            bias = None if bias is None else bias.float()
            logits = F.linear(hidden.float(), weight.float(), bias)
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits

    # -- learning path ---------------------------------------------------------------------------

    def token_stats(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: int,
        *,
        with_entropy: bool = True,
        with_values: bool = True,
        temperature: float | None = None,
        reference: bool = False,
        mask: torch.Tensor | None = None,
        support: torch.Tensor | None = None,
    ) -> TokenStats:
        """Log-probs, entropies and values of the completion tokens of full sequences.

        ``input_ids``/``attention_mask``: ``(B, P + T)`` in the env's layout (prompt left-padded
        in ``[0, P)``, completion from ``P`` on, ``P = prompt_len``), e.g. the final observation
        of an episode. Runs with gradients if they are enabled (the training path) and under the
        policy's autocast. ``reference=True`` scores with the reference model instead (no values,
        no gradients). ``temperature`` defaults to the policy's. ``mask``: bool ``(B, T)``, the
        positions to score (default: every real token after ``P``); a dialogue scores the agent's
        tokens only (its ``agent_mask``), the partner's are context. ``support``: packed sets
        (NLPO's) the distribution is renormalised over, for the reference as for the policy.
        """
        temperature = self.temperature if temperature is None else temperature
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)
        if mask is None:
            mask = attention_mask[:, prompt_len:].bool()
        else:
            mask = mask.to(self.device).bool()
        targets = input_ids[:, prompt_len:]
        if support is not None:
            support = support.to(self.device)[mask]
        args = (input_ids, attention_mask, prompt_len, mask, targets, temperature, with_entropy)
        if reference:
            with torch.no_grad(), self._reference() as ref:
                return self._score(ref, *args, False, support)
        return self._score(self.model, *args, with_values, support)

    def _score(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: int,
        mask: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        with_entropy: bool,
        with_values: bool,
        support: torch.Tensor | None = None,
    ) -> TokenStats:
        # The hidden state at position P-1+t predicts completion token t; the last position
        # predicts nothing we score, so it is not fed.
        with self.autocast():
            fed = input_ids[:, :-1]
            steps = self.step_ids(np.arange(fed.shape[1]), np.array([prompt_len]))
            hidden = self._completion_hidden(model, fed, attention_mask[:, :-1], prompt_len, steps)
            weight, bias = _head_weight_and_bias(_decoder_and_head(model)[1])  # LoRA included
            logp, ent = token_logprobs(
                hidden[mask],
                weight,
                targets[mask],
                bias=bias,
                temperature=temperature,
                with_entropy=with_entropy,
                chunk_size=self.chunk_size,
                softcap=self.softcap,
                support=support,
            )
        shape = mask.shape
        logprobs = logp.new_zeros(shape).index_put((mask,), logp)
        entropies = logp.new_zeros(shape).index_put((mask,), ent) if with_entropy else None
        values = self._value(hidden) * mask if with_values else None
        return TokenStats(logprobs, entropies, values, mask)

    def _completion_hidden(
        self,
        model: nn.Module,
        fed: torch.Tensor,
        fed_mask: torch.Tensor,
        prompt_len: int,
        steps: np.ndarray | None,
    ) -> torch.Tensor:
        """Hidden states of positions ``[P - 1, L)`` of ``fed`` ``(B, L)``: those that predict the
        completion tokens. Rows with the same prompt (a GRPO/RLOO group) share it: the distinct
        prompts run once, their KV cache rows are copied (differentiably) to every row, and the
        completions run on top, so a group of G pays one prompt forward and backward, not G.
        Every row count and shape follows from the batch alone, so the policy and its reference,
        and the rescoring and the update, score a batch by the same computation. Eager only (a
        compiled decoder keeps its one full-sequence graph)."""
        positions = position_ids(fed_mask)
        width = fed.shape[1]
        shared = None
        if self.compile_backend is None and 1 < prompt_len < width and fed.shape[0] > 1:
            prompts = fed[:, :prompt_len].cpu().numpy(), fed_mask[:, :prompt_len].cpu().numpy()
            unique, inverse = unique_rows(*prompts, None)
            if len(unique) < fed.shape[0]:
                shared = unique, inverse
        if shared is None:
            return self._hidden(model, fed, fed_mask, positions, steps=steps)[:, prompt_len - 1 :]
        device = fed.device
        u, inv = (torch.from_numpy(x).to(device) for x in shared)
        cache = new_dynamic_cache(_decoder_and_head(model)[0].config)
        prompt = self._hidden(
            model,
            fed[u, :prompt_len],
            fed_mask[u, :prompt_len],
            positions[u, :prompt_len],
            cache,
            steps=None if steps is None else steps[:, :prompt_len],
        )
        cache.reorder_cache(inv)
        rest = self._hidden(
            model,
            fed[:, prompt_len:],
            fed_mask,
            positions[:, prompt_len:],
            cache,
            steps=None if steps is None else steps[:, prompt_len:],
        )
        return torch.cat([prompt[inv, prompt_len - 1 :], rest], dim=1)

    # -- acting ----------------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Forget the KV cache; the next :meth:`act` prefills every slot."""
        self.acting_cache.reset()

    def _bias_for(self, action_mask: Any) -> torch.Tensor | None:
        """The additive (0 / -inf) form of an action mask, cached while the mask is unchanged."""
        if action_mask is None:
            return None
        mask = np.asarray(action_mask)
        if mask.ndim == 2 and mask.strides[0] == 0:  # a broadcast of one row (textgym's envs)
            mask = mask[0]
        if self._mask_key is None or not np.array_equal(self._mask_key, mask):
            bias = torch.zeros(mask.shape, dtype=torch.float32)
            bias[torch.from_numpy(~mask.astype(bool))] = float("-inf")
            self._mask_key, self._mask_bias = mask.copy(), bias.to(self.device)
        return self._mask_bias

    @torch.no_grad()
    def act(
        self,
        obs: dict[str, np.ndarray],
        action_mask: Any = None,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        ignore: np.ndarray | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        support: torch.Tensor | None = None,
    ) -> ActOutput:
        """Choose the next token of every slot of a textgym vector-env observation.

        Slots with ``num_generated == 0`` (new prompts, e.g. after an autoreset) are prefilled;
        the others feed the one token the env appended since the last call, or, when the env
        appended several (a dialogue partner's reply), are prefilled again up to the last one.
        The KV cache is the policy's :class:`~agents.acting_cache.ActingCache`. ``ignore``: bool
        ``(N,)``, slots whose outputs the caller discards (finished episodes the caller keeps
        stepping, as ``generate`` keeps padding finished rows): they are neither prefilled nor
        attended to, and are rebuilt from their observation if used again. ``action_mask``: the
        env's ``action_masks()`` (filters sampling). ``support``: bool ``(N, V)``, restricts the
        distribution itself (see :func:`~agents.sampling.sample_tokens`); it comes back packed in
        the output, for the update to score the same distribution. Top-k/top-p (``top_k``,
        ``top_p`` or the policy's) truncate the distribution the same way: their kept set is
        returned as the support (see the module docstring). With bf16 precision, wrap a stream of
        calls in ``with policy.autocast():`` so that the weights are cast once, not at every call
        (:func:`~agents.rollout.collect_rollout` does).
        """
        ids_np, mask_np = obs["input_ids"], obs["attention_mask"]
        n, length = ids_np.shape
        num_generated = obs["num_generated"].reshape(n)
        # The last real token of each row: the prompt's last token right after a reset, else the
        # token the env appended last step (at P + num_generated - 1).
        last = length - 1 - np.argmax(mask_np[:, ::-1], axis=1)
        # The completion step of every column (the prompt ends at last - num_generated).
        steps = self.step_ids(np.arange(length), last - num_generated + 1)
        ignore = np.zeros(n, dtype=bool) if ignore is None else np.asarray(ignore, dtype=bool)
        forward = functools.partial(self._hidden, self.model)
        with self.autocast():
            hidden = self.acting_cache.feed(
                forward, ids_np, mask_np, num_generated, last, steps, ignore, self.device
            )
            logits = self._logits(self.model, hidden)
        temperature = self.temperature if temperature is None else temperature
        top_k = self.top_k if top_k is None else top_k
        top_p = self.top_p if top_p is None else top_p
        mask_bias = self._bias_for(action_mask)
        if not deterministic:
            # Top-k/top-p truncate the distribution sampled from: its set becomes the step's
            # support (returned packed), so that the update scores that same distribution.
            kept = sampling_support(
                logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                mask_bias=mask_bias,
                support=support,
            )
            if kept is not None:
                support, top_k, top_p = kept, 0, 1.0
        tokens, logp = sample_tokens(
            logits,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            mask_bias=mask_bias,
            support=support,
            deterministic=deterministic,
            generator=generator,
        )
        packed = None if support is None else pack_support(support)
        return ActOutput(tokens.cpu().numpy(), logp, self._value(hidden), packed)
