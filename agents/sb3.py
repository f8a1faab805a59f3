"""Stable-Baselines3 and sb3-contrib on textgym environments.

SB3 needs four things that a plain ``check_env`` pass does not give it on token environments:

* **A features extractor that embeds token ids.** SB3 one-hots ``Discrete``/``MultiDiscrete``
  observations and casts ``Box`` observations to float, so a token id would become one float
  feature. textgym's observation is a ``Dict`` of int64 ``Box`` arrays; SB3's buffers store it as
  float32 (token ids below 2**24 are exact in float32) and :class:`TokenEmbeddingExtractor` casts
  it back to ``long`` before ``nn.Embedding``. :func:`token_policy_kwargs` is a ready
  ``policy_kwargs`` for PPO, A2C and DQN (with ``"MultiInputPolicy"``).
* **A VecEnv that is the native vector env.** SB3's ``VecEnv`` is not
  ``gymnasium.vector.VectorEnv`` (``reset() -> obs``, ``step -> (obs, reward, done, infos)``
  with a list of per-env infos, same-step autoreset with ``infos[i]["terminal_observation"]``).
  :class:`SB3VecEnv` adapts a :class:`~textgym.TextGenVectorEnv` in ``SAME_STEP`` autoreset mode,
  so SB3 steps all episodes with numpy instead of ``DummyVecEnv`` over N copies;
  :func:`make_sb3_env` builds one from an env id.
* **Action masks for MaskablePPO**, through ``action_masks()``; see :data:`MASKABLE_MEMORY_NOTE`
  and the NLPO-style :class:`TopKActionMasks` (mask to the top-k tokens of a reference LM).
* **An LM as the policy:** :class:`LMActorCriticPolicy`, an SB3 ``ActorCriticPolicy`` backed by
  a transformers causal LM (next-token logits = action logits, a linear value head on the same
  hidden state), so ``PPO(LMActorCriticPolicy, env, policy_kwargs={"model": "smollm2-135m"})``
  fine-tunes the LM with SB3's own PPO.

Importing this module needs ``stable-baselines3``; ``import agents`` does not import it.
Over 600 lines because one concept needs them: everything that runs on SB3 sits behind this one
optional import, and the four parts share the token-tensor helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)
from torch import nn

from textgym.models import position_ids

__all__ = [
    "MASKABLE_MEMORY_NOTE",
    "LMActorCriticPolicy",
    "SB3VecEnv",
    "TokenEmbeddingExtractor",
    "TopKActionMasks",
    "lm_next_token",
    "make_sb3_env",
    "maskable_buffer_bytes",
    "token_policy_kwargs",
]


# --- features extractor ------------------------------------------------------------------


def _token_tensors(obs: dict[str, th.Tensor]) -> tuple[th.Tensor, th.Tensor]:
    """``input_ids`` and ``attention_mask`` as ``long``.

    During rollouts SB3 passes the env's int64 arrays as int64 tensors; during training it passes
    what its buffers stored, float32 (exact for ids below 2**24, far above any vocabulary).
    """
    ids = obs["input_ids"]
    mask = obs["attention_mask"]
    if ids.is_floating_point():
        ids = ids.round()
    return ids.long(), (mask > 0.5).long()


def _last_index(mask: th.Tensor) -> th.Tensor:
    """Index of the last real token of each row (the position whose next token is chosen)."""
    positions = th.arange(mask.shape[1], device=mask.device)
    return (mask * positions).argmax(dim=1)


class TokenEmbeddingExtractor(BaseFeaturesExtractor):
    """Embeds textgym's token-id observation: ``nn.Embedding`` + positions + a small transformer.

    * ``input_ids`` are cast back to ``long`` (SB3 stores observations as float32, exact for ids
      below 2**24) and embedded; padding (``attention_mask == 0``) is masked out everywhere.
    * Positions count real tokens only (:func:`textgym.models.position_ids`, as an LM's position
      ids under left padding): the first prompt token is always at position 0, whatever the
      prompt's length, so "the t-th character of the prompt" is a fixed position.
    * A query token, the embedding of ``num_generated`` (which step this is), is appended; it
      attends over the sequence in ``n_layers`` pre-norm transformer layers, so "read the
      prompt token at position t" is one attention pattern (copy-style tasks learn fast).
    * Features: the query's final hidden state and the last real token's, concatenated:
      ``features_dim = 2 * embed_dim``.

    Args:
        observation_space: textgym's ``Dict`` observation space (``input_ids``,
            ``attention_mask``, ``num_generated``); the vocabulary size is ``input_ids``' upper
            bound + 1, the context length its shape.
        embed_dim: width of the embeddings and the encoder.
        n_layers: transformer layers (1 suffices for copy; 2 for reverse/sort-like tasks).
        n_heads: attention heads.
        dropout: dropout in the encoder (0: RL rarely wants it).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        embed_dim: int = 64,
        n_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.0,
    ):
        keys = getattr(observation_space, "spaces", {})
        if not {"input_ids", "attention_mask", "num_generated"} <= set(keys):
            raise ValueError(
                f"TokenEmbeddingExtractor needs textgym's Dict observation space with "
                f"'input_ids', 'attention_mask' and 'num_generated', got {observation_space}"
            )
        super().__init__(observation_space, features_dim=2 * embed_dim)
        ids_space = observation_space["input_ids"]
        self.vocab_size = int(np.max(ids_space.high)) + 1
        self.context = int(ids_space.shape[0])
        self.max_steps = int(np.max(observation_space["num_generated"].high)) + 1
        self.token = nn.Embedding(self.vocab_size, embed_dim)
        self.position = nn.Embedding(self.context, embed_dim)
        self.step = nn.Embedding(self.max_steps, embed_dim)
        layer = nn.TransformerEncoderLayer(
            embed_dim,
            n_heads,
            dim_feedforward=2 * embed_dim,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, max(n_layers, 0), enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        ids, mask = _token_tensors(observations)
        step = observations["num_generated"].reshape(-1).round().long()
        step = step.clamp(0, self.max_steps - 1)
        positions = position_ids(mask)
        x = self.token(ids) + self.position(positions)
        query = self.step(step).unsqueeze(1)
        x = th.cat([x, query], dim=1)
        padding = th.cat([mask == 0, mask.new_zeros(mask.shape[0], 1, dtype=th.bool)], dim=1)
        x = self.norm(self.encoder(x, src_key_padding_mask=padding))
        rows = th.arange(ids.shape[0], device=ids.device)
        return th.cat([x[:, -1], x[rows, _last_index(mask)]], dim=-1)


def token_policy_kwargs(
    algo: str = "ppo",
    embed_dim: int = 64,
    n_layers: int = 1,
    n_heads: int = 4,
    hidden: Sequence[int] = (64,),
    **extractor_kwargs: Any,
) -> dict[str, Any]:
    """``policy_kwargs`` for SB3's ``"MultiInputPolicy"`` on a textgym env.

    ``algo``: ``"ppo"``/``"a2c"`` (actor-critic heads ``hidden`` on a shared
    :class:`TokenEmbeddingExtractor`) or ``"dqn"`` (a Q-head ``hidden``).

        PPO("MultiInputPolicy", env, policy_kwargs=token_policy_kwargs())

    For PPO (and sb3-contrib's PPOs) it sets ``ortho_init=False``: SB3's orthogonal init (gain
    sqrt(2)) also hits the transformer's linear layers (attention output, feed-forward). PPO on
    ``TextGen-Copy-v0`` (char alphabet "abcde", seed 0), greedy test score at 50k / 100k steps:
    0.98 / 0.77 with it, 0.96 / 1.0 without. Runs can still unlearn (seed 1: 0.86 / 0.72).
    """
    algo = algo.lower()
    kwargs: dict[str, Any] = {
        "features_extractor_class": TokenEmbeddingExtractor,
        "features_extractor_kwargs": dict(
            embed_dim=embed_dim, n_layers=n_layers, n_heads=n_heads, **extractor_kwargs
        ),
    }
    if algo in ("ppo", "a2c", "maskableppo", "maskable_ppo", "recurrentppo"):
        kwargs["net_arch"] = dict(pi=list(hidden), vf=list(hidden))
        kwargs["share_features_extractor"] = True
        if algo != "a2c":  # A2C (RMSprop, lr 3e-3) learned the small copy task worse without it
            kwargs["ortho_init"] = False
    elif algo in ("dqn", "qrdqn"):
        kwargs["net_arch"] = list(hidden)
    else:
        raise ValueError(f"algo must be 'ppo', 'a2c' or 'dqn' (or sb3-contrib's), got {algo!r}")
    return kwargs


# --- VecEnv adapter ----------------------------------------------------------------------


def _unbatch(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's vector infos (``infos[key][i]`` where ``infos["_" + key][i]``) -> a list."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in infos.items():
        if key.startswith("_") and key[1:] in infos:
            continue
        present = infos.get("_" + key)
        for i in range(num_envs):
            if present is not None and not present[i]:
                continue
            item = value[i] if isinstance(value, np.ndarray) and len(value) == num_envs else value
            if isinstance(value, dict):  # a nested vector info (e.g. Gymnasium's "episode")
                item = _unbatch(value, num_envs)[i]
            elif isinstance(item, np.generic):
                item = item.item()
            out[i][key] = item
    return out


class SB3VecEnv(VecEnv):
    """A Gymnasium ``VectorEnv`` in ``SAME_STEP`` autoreset mode as an SB3 ``VecEnv``.

    Made for :class:`~textgym.TextGenVectorEnv` (all episodes stepped with numpy, one scorer call
    per step) but works with any same-step vector env. The SB3 conventions:

    * ``reset()`` returns the observations only; the reset infos are in ``reset_infos``. Seeds
      from ``seed(s)`` (env ``i`` gets ``s + i``, as ``TextGenVectorEnv.reset(seed=s)`` does) and
      options from ``set_options`` apply at the next ``reset()`` only.
    * ``step`` returns ``(obs, rewards float32, dones bool, infos list)`` with
      ``dones = terminated | truncated``. An env whose episode ended returns the first
      observation of its next episode; ``infos[i]`` is the last step's info (``completion``,
      ``score``, ...) plus ``terminal_observation`` (the last observation) and
      ``TimeLimit.truncated = truncated and not terminated``; the new episode's reset info goes
      to ``reset_infos[i]``.
    * ``env_method("action_masks")`` (what sb3-contrib's ``get_action_masks`` calls) returns
      the rows of the vector env's ``(num_envs, V)`` mask; other methods are called once on the
      vector env and split per env when they return one value per env. ``get_attr`` returns the
      vector env's attribute once per env (all slots share one task/tokenizer); ``set_attr``
      sets it on the vector env, so it needs all indices.
    """

    def __init__(self, venv: gym.vector.VectorEnv):
        mode = venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if AutoresetMode(mode) != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"SB3VecEnv needs a vector env in SAME_STEP autoreset mode (SB3 resets in the "
                f"step that ends an episode), got {mode}; create it with "
                f"gym.make_vec(env_id, num_envs=n, autoreset_mode='SameStep') or use "
                f"agents.sb3.make_sb3_env(env_id, n_envs=n)"
            )
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    # -- core API ----------------------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        seed = list(self._seeds) if any(s is not None for s in self._seeds) else None
        options = self._merged_options()
        obs, infos = self.venv.reset(seed=seed, options=options)
        self.reset_infos = _unbatch(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def _merged_options(self) -> dict[str, Any] | None:
        options = [o or {} for o in self._options]
        if not any(options):
            return None
        if all(o == options[0] for o in options):
            return dict(options[0])
        keys = set().union(*options)
        if keys == {"prompt"}:  # TextGenVectorEnv takes one prompt per env
            return {"prompt": [o.get("prompt") for o in options]}
        raise ValueError(
            "per-env reset options differ; the native vector env takes one options dict "
            "(or {'prompt': [one per env]})"
        )

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64, copy=False)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        self._actions = None
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        dones = terminated | truncated
        final_obs = infos.pop("final_obs", None)
        final_info = infos.pop("final_info", None)
        infos.pop("_final_obs", None)
        infos.pop("_final_info", None)
        step_infos = _unbatch(infos, self.num_envs)
        finals = _unbatch(final_info, self.num_envs) if final_info else None
        out: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            if dones[i]:
                # The env autoreset in this step: its step info belongs to the new episode.
                self.reset_infos[i] = step_infos[i]
                info = dict(finals[i]) if finals is not None else {}
                info["terminal_observation"] = final_obs[i]
            else:
                info = step_infos[i]
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            out.append(info)
        return obs, np.asarray(rewards, dtype=np.float32), dones, out

    def close(self) -> None:
        self.venv.close()

    # -- attributes and methods --------------------------------------------------------------

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError(
                "the envs of a native vector env share their attributes; set_attr needs "
                "indices=None (all envs)"
            )
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        indices = list(self._get_indices(indices))
        if hasattr(self.venv, method_name):
            result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        elif hasattr(self.venv, "call"):  # Sync/AsyncVectorEnv: call it on each sub-env
            result = self.venv.call(method_name, *method_args, **method_kwargs)
        else:
            raise AttributeError(f"{type(self.venv).__name__} has no method {method_name!r}")
        if isinstance(result, (np.ndarray, list, tuple)) and len(result) == self.num_envs:
            return [result[i] for i in indices]
        return [result for _ in indices]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        from stable_baselines3.common.env_util import is_wrapped

        envs = getattr(self.venv, "envs", None)  # SyncVectorEnv has sub-envs; native has none
        return [
            bool(envs is not None and is_wrapped(envs[i], wrapper_class))
            for i in self._get_indices(indices)
        ]

    def action_masks(self) -> np.ndarray:
        """``(num_envs, V)`` bool masks of the vector env."""
        return np.asarray(self.env_method("action_masks"))

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs  # text envs render text: use env_method("render")


def make_sb3_env(
    env: str | gym.vector.VectorEnv = "TextGen-v0",
    n_envs: int = 8,
    seed: int | None = None,
    monitor: bool = True,
    **env_kwargs: Any,
) -> VecEnv:
    """An SB3 ``VecEnv`` over the native vector env of ``env`` (an id, or a same-step vector env).

    ``env_kwargs`` go to the environment (``task=``, ``tokenizer=``, ``max_new_tokens=``, ...).
    ``seed`` seeds the first ``reset()`` (env ``i`` gets ``seed + i``); SB3's ``learn`` seeds
    it again when the algorithm was given ``seed=``. ``monitor`` wraps it in ``VecMonitor`` so
    SB3 logs ``ep_rew_mean`` and ``evaluate_policy`` sees episode statistics.
    """
    if isinstance(env, str):
        import textgym  # noqa: F401  (registers the ids)

        env = gym.make_vec(
            env,
            num_envs=n_envs,
            vectorization_mode="vector_entry_point",
            autoreset_mode=AutoresetMode.SAME_STEP,
            **env_kwargs,
        )
    elif env_kwargs:
        raise ValueError("env_kwargs only apply when env is an id")
    vec: VecEnv = SB3VecEnv(env)
    if seed is not None:
        vec.seed(seed)
    return VecMonitor(vec) if monitor else vec


# --- MaskablePPO -------------------------------------------------------------------------


def maskable_buffer_bytes(vocab_size: int, n_steps: int, n_envs: int) -> int:
    """Bytes of sb3-contrib MaskablePPO's action-mask buffer: float32 ``(n_steps, n_envs, V)``."""
    return 4 * vocab_size * n_steps * n_envs


MASKABLE_MEMORY_NOTE = """\
MaskablePPO (sb3-contrib) stores the action mask of every step in its rollout buffer as float32
of shape (n_steps, n_envs, V): 4 * n_steps * n_envs * V bytes, on top of the (n_steps * n_envs,
V) masks it builds again for every minibatch. At V = 49,152 (SmolLM2) that is
maskable_buffer_bytes(49152, 128, 16) = 402,653,184 bytes (403 MB) for 128 steps x 16 envs, and
3.2 GB for SB3's default 2048 steps x 8 envs. Use MaskablePPO with small vocabularies (the char
tokenizer: V = 99, 6.5 MB at 2048 x 8), or keep V large but mask to few tokens with
TopKActionMasks (the buffer is the same size; the point is a smaller effective action space),
and keep n_steps * n_envs small. For LM fine-tuning on large vocabularies use agents.PPO, which
never stores masks.
"""


@th.no_grad()
def _reference_logits(model: nn.Module, ids: th.Tensor, mask: th.Tensor, vocab: int) -> th.Tensor:
    logits, _ = lm_next_token(model, ids, mask)
    return _fit_vocab(logits.float(), vocab)


def _fit_vocab(logits: th.Tensor, vocab: int) -> th.Tensor:
    """Cut or pad (with -inf) the model's logits to the env's vocabulary."""
    if logits.shape[-1] >= vocab:
        return logits[..., :vocab]
    pad = logits.new_full((*logits.shape[:-1], vocab - logits.shape[-1]), float("-inf"))
    return th.cat([logits, pad], dim=-1)


class TopKActionMasks(VecEnvWrapper):
    """NLPO-style masking: allow only the ``k`` most likely next tokens of a reference LM.

    Wraps an SB3 ``VecEnv`` of a textgym env (e.g. :func:`make_sb3_env`); ``action_masks()``
    (and ``env_method("action_masks")``, which MaskablePPO calls) return the env's own mask AND
    the top-``k`` tokens of ``model`` given the current observations (one batched forward pass
    without gradients per step, computed on demand). Like NLPO, this keeps a policy close to the
    support of a language model while the vocabulary stays the action space.

    Args:
        venv: the SB3 vector env.
        model: a transformers causal LM, or a name for :func:`textgym.models.load_lm`; it must
            share the env's tokenizer.
        k: tokens allowed per step.
        device: where the reference model runs (default: where its parameters are).
    """

    def __init__(self, venv: VecEnv, model: Any, k: int = 50, device: Any = None):
        super().__init__(venv)
        if isinstance(model, str):
            from textgym.models import load_lm

            model, _ = load_lm(model, device=device)
        self.model = model.eval()
        self.device = th.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self.k = int(k)
        self.vocab_size = int(venv.action_space.n)
        self._obs: dict[str, np.ndarray] | None = None
        self._masks: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        self._obs, self._masks = obs, None
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._obs, self._masks = obs, None
        return obs, rewards, dones, infos

    def action_masks(self) -> np.ndarray:
        """``(num_envs, V)`` bool: the env's mask and the reference LM's top-k tokens."""
        if self._obs is None:
            raise RuntimeError("call reset() before action_masks()")
        if self._masks is None:
            base = np.asarray(self.venv.env_method("action_masks"), dtype=bool)
            ids = th.as_tensor(self._obs["input_ids"], device=self.device)
            mask = th.as_tensor(self._obs["attention_mask"], device=self.device)
            logits = _reference_logits(self.model, ids, mask, self.vocab_size)
            logits[~th.as_tensor(base, device=self.device)] = float("-inf")
            top = logits.topk(min(self.k, self.vocab_size), dim=-1).indices.cpu().numpy()
            masks = np.zeros_like(base)
            np.put_along_axis(masks, top, True, axis=1)
            self._masks = masks & base
        return self._masks.copy()

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in self._get_indices(indices)]
        return self.venv.env_method(method_name, *method_args, indices=indices, **method_kwargs)


# --- LM policy -----------------------------------------------------------------------------


def lm_next_token(
    model: nn.Module, input_ids: th.Tensor, attention_mask: th.Tensor
) -> tuple[th.Tensor, th.Tensor]:
    """Next-token logits ``(B, V_model)`` and final hidden state ``(B, H)`` of each row.

    Rows use textgym's layout (left-padded prompt, generated tokens, right padding): columns that
    are padding in every row are dropped, position ids count real tokens only (so left padding
    does not shift positions), and the LM head runs on the last real token of each row only,
    never on ``(B, L, V)``. Works for transformers causal LMs whose logits are
    ``get_output_embeddings()(hidden)`` (Llama, SmolLM2, GPT-2, Qwen, Mistral, ...).
    """
    last = _lm_last_hidden(model, input_ids, attention_mask)
    return model.get_output_embeddings()(last), last


def _lm_last_hidden(model: nn.Module, input_ids: th.Tensor, attention_mask: th.Tensor) -> th.Tensor:
    """Final hidden state ``(B, H)`` at the last real token of each row (see lm_next_token)."""
    mask = attention_mask.long()
    live = th.nonzero(mask.any(dim=0)).squeeze(1)
    if live.numel():
        input_ids = input_ids[:, live.min() : live.max() + 1]
        mask = mask[:, live.min() : live.max() + 1]
    out = model.base_model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=position_ids(mask),
        use_cache=False,
    )
    hidden = out.last_hidden_state
    rows = th.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, _last_index(mask)]


class _NoFeatures(BaseFeaturesExtractor):
    """A parameter-free placeholder: the LM reads the observation itself."""

    def __init__(self, observation_space: spaces.Space):
        super().__init__(observation_space, features_dim=1)

    def forward(self, observations: Any) -> th.Tensor:  # pragma: no cover - never called
        raise RuntimeError("LMActorCriticPolicy does not use a features extractor")


class LMActorCriticPolicy(ActorCriticPolicy):
    """An SB3 ``ActorCriticPolicy`` whose actor is a transformers causal LM.

    The action distribution is a Categorical over the LM's next-token logits at the last real
    token of the observation, the value is a linear head on the same final hidden state (one
    trunk for actor and critic). SB3's features extractor and MLP heads are not used; SB3's
    optimizer (``optimizer_class``, default Adam) covers the LM and the value head, with the
    algorithm's ``learning_rate`` (small: ~1e-5 for SmolLM2-135M, ~1e-3 for a tiny LM).

        PPO(LMActorCriticPolicy, make_sb3_env("TextGen-v0"), learning_rate=1e-5,
            policy_kwargs={"model": "smollm2-135m"})

    Args:
        model: a name for :func:`textgym.models.load_lm` (``"smollm2-135m"``, a folder, a hub
            id) or a transformers causal-LM object (used as is, not copied). Its vocabulary must
            cover the env's action space (logits past ``V`` are dropped).
        value_init_std: std of the value head's initial weights (its bias starts at 0).
        The other arguments are ``ActorCriticPolicy``'s (``net_arch``, ``ortho_init``, ... are
        ignored).

    Each step runs the LM over the whole observation (no KV cache, as in RL4LMs); ``agents.PPO``
    keeps a KV cache per env slot and is the faster route for real LM fine-tuning.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        model: Any = "smollm2-135m",
        value_init_std: float = 0.01,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(
                f"LMActorCriticPolicy needs a Discrete action space, got {action_space}"
            )
        for ignored in ("features_extractor_class", "net_arch", "ortho_init"):
            kwargs.pop(ignored, None)
        kwargs.pop("features_extractor_kwargs", None)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            ortho_init=False,
            features_extractor_class=_NoFeatures,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            **kwargs,
        )
        self.model_name = model if isinstance(model, str) else None
        if isinstance(model, str):
            from textgym.models import load_lm

            model, _ = load_lm(model, device="cpu")
        self.lm = model
        hidden = int(model.config.hidden_size)
        dtype = next(model.parameters()).dtype
        self.value_head = nn.Linear(hidden, 1, dtype=dtype)
        nn.init.normal_(self.value_head.weight, std=value_init_std)
        nn.init.zeros_(self.value_head.bias)
        self.value_init_std = value_init_std
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _build(self, lr_schedule: Schedule) -> None:
        """Nothing to build here: the LM and the value head are built in ``__init__``."""

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in (
            "net_arch",
            "ortho_init",
            "features_extractor_class",
            "features_extractor_kwargs",
        ):
            data.pop(key, None)
        data.update(model=self.model_name or self.lm, value_init_std=self.value_init_std)
        return data

    def _logits_hidden(self, obs: dict[str, th.Tensor]) -> tuple[th.Tensor, th.Tensor]:
        ids, mask = _token_tensors(obs)
        logits, hidden = lm_next_token(self.lm, ids, mask)
        return _fit_vocab(logits.float(), int(self.action_space.n)), hidden

    def _dist_values(self, obs: dict[str, th.Tensor]) -> tuple[Distribution, th.Tensor]:
        logits, hidden = self._logits_hidden(obs)
        values = self.value_head(hidden).float()
        return self.action_dist.proba_distribution(action_logits=logits), values

    def forward(
        self, obs: dict[str, th.Tensor], deterministic: bool = False
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        distribution, values = self._dist_values(obs)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values, distribution.log_prob(actions)

    def evaluate_actions(
        self, obs: dict[str, th.Tensor], actions: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        distribution, values = self._dist_values(obs)
        return values, distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: dict[str, th.Tensor]) -> Distribution:
        logits, _ = self._logits_hidden(obs)
        return self.action_dist.proba_distribution(action_logits=logits)

    def predict_values(self, obs: dict[str, th.Tensor]) -> th.Tensor:
        ids, mask = _token_tensors(obs)
        return self.value_head(_lm_last_hidden(self.lm, ids, mask)).float()

    def _predict(self, observation: dict[str, th.Tensor], deterministic: bool = False) -> th.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)
