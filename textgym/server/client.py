"""Gymnasium envs backed by a ``textgym serve`` server: :class:`RemoteEnv` and
:class:`RemoteVectorEnv`.

Each is an ordinary Gymnasium env (``reset``/``step``, spaces, a vector env's autoreset and info
layout), so learners, Stable-Baselines3 and any Gymnasium code run against a server unchanged;
for the same seeds their observations, rewards and infos equal the local env's, because the
server runs that very env and :mod:`textgym.server.protocol` carries every value exactly.

* :class:`RemoteEnv`: one session. ``step(token)`` is one round trip per token;
  :meth:`RemoteEnv.step_chunk` sends many ids in one request, consumed up to the env's next
  control point (the episode ends, or the env appends tokens of its own).
* :class:`RemoteVectorEnv`: ``num_envs`` slots as native vector sessions, spread over one or
  more servers (slots split in contiguous blocks, the servers stepped in parallel).
* :func:`step_chunks`: one chunk for each of many :class:`RemoteEnv` on a server, in one
  request (``/step_many``).

Both speak HTTP (``protocol="http"``, keep-alive) or WebSocket (``"ws"``, one connection per
session). A server that cannot be reached raises :class:`~textgym.errors.ServerUnavailableError`;
once it is back, ``reset()`` opens a new session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from textgym.envs.checks import check_seed, vector_seeds
from textgym.errors import (
    InvalidArgumentError,
    InvalidTokenError,
)
from textgym.server.link import Link
from textgym.server.protocol import (
    decode,
    decode_observation,
    decode_space,
    remote_error,
)


class _Described:
    """What both clients take from a session description: spaces, tokenizer, action mask."""

    def _describe(self, description: dict[str, Any]) -> None:
        self._description = description
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The server env's tokenizer, loaded here by name (:func:`textgym.models.load_tokenizer`)
        on first use; an env built with a tokenizer object has no name to load it by."""
        if self._tokenizer is None:
            from textgym.models import load_tokenizer

            name, size = self._description["tokenizer"], self._description["tokenizer_size"]
            if name is None:
                raise InvalidArgumentError(
                    "the server's env was built with a tokenizer object, which a client cannot "
                    "load by name; serve it with tokenizer=NAME in --env-kwargs"
                )
            tokenizer = load_tokenizer(name)
            if size is not None and len(tokenizer) != size:
                raise InvalidArgumentError(
                    f"tokenizer {name!r} has {len(tokenizer)} tokens here and {size} on the server"
                )
            self._tokenizer = tokenizer
        return self._tokenizer

    def _single_mask(self) -> np.ndarray:
        mask = np.ones(int(self._single_action_space.n), dtype=bool)
        mask[self._description["masked_ids"]] = False
        return mask


class RemoteEnv(_Described, gym.Env):
    """A single env whose episodes run on a ``textgym serve`` server.

    ``RemoteEnv(url, protocol="http" | "ws", token=None, turns=False, timeout=60.0)``: ``url``
    is the server's ``http://host:port``; ``token`` its shared secret; ``turns=True`` plays the
    id under :class:`~textgym.turns.TextTurns` (actions are text turns); ``timeout`` bounds
    each request in seconds. Spaces, ``reset``, ``step``, ``action_masks()`` and ``tokenizer``
    are the served env's. ``step_chunk(ids)`` steps several token ids in one request.
    ``render()`` returns None (the text is in ``info`` at the end of an episode).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        url: str,
        protocol: str = "http",
        token: str | None = None,
        turns: bool = False,
        timeout: float = 60.0,
    ):
        self._link = Link(url, protocol, token, timeout, {"turns": bool(turns)})
        self._describe(self._link.open())
        self.observation_space = decode_space(self._description["observation_space"])
        self.action_space = self._single_action_space = decode_space(
            self._description["action_space"]
        )
        self.turns = bool(turns)

    @property
    def session_id(self) -> str | None:
        return self._link.session_id

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        result = self._link.reset(check_seed(seed), options)
        super().reset(seed=seed)  # the client's np_random, seeded as Gymnasium expects
        return self._observation(result), decode(result["info"])

    def step(self, action: Any):
        if self.turns:
            turn = action.tolist() if isinstance(action, np.ndarray) else action
            result = self._link.step({"turn": turn})
        else:
            result = self._link.step({"token": _token(action)})
        return (
            self._observation(result),
            float(result["reward"]),
            bool(result["terminated"]),
            bool(result["truncated"]),
            decode(result["info"]),
        )

    def step_chunk(self, tokens: Sequence[int]) -> ChunkResult:
        """Step ``tokens`` in one request, up to the env's next control point (see
        :class:`ChunkResult`)."""
        if self.turns:
            raise InvalidArgumentError(
                "step_chunk is for token sessions; a turns session takes step(text)"
            )
        return self._chunk_result(self._link.step({"tokens": [_token(t) for t in tokens]}))

    def _chunk_result(self, result: dict[str, Any]) -> ChunkResult:
        return ChunkResult(
            self._observation(result),
            np.asarray(result["rewards"], dtype=np.float64),
            bool(result["terminated"]),
            bool(result["truncated"]),
            decode(result["info"]),
            int(result["used"]),
        )

    def _observation(self, result: dict[str, Any]) -> Any:
        return decode_observation(result["observation"], self.observation_space, None)

    def state(self) -> dict[str, Any]:
        """OpenEnv's state of the session: ``episode_id``, ``step_count``, ..."""
        return self._link.state()

    def control_points(self) -> Any:
        """The served env's :class:`~textgym.envs.control_points.ControlPoints` (one request)."""
        return self._link.control_points()[0]

    def action_masks(self) -> np.ndarray:
        """``(V,)`` bool, the served env's ``action_masks()`` (textgym's depend on the tokenizer
        only, so the server sends it once)."""
        return self._single_mask()

    def render(self) -> None:
        return None

    def close(self) -> None:
        self._link.close()


@dataclasses.dataclass
class ChunkResult:
    """What :meth:`RemoteEnv.step_chunk` returns: the observation after the last id used, the
    reward of each id used (``rewards[k]`` is what ``step`` would have returned for the k-th),
    whether the episode ended, the last step's info, and how many ids were used (fewer than
    sent when the episode ended or the env appended tokens of its own: send the rest, if still
    wanted, after looking at the new observation)."""

    observation: dict[str, np.ndarray]
    rewards: np.ndarray
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    used: int


def step_chunks(envs: Sequence[RemoteEnv], chunks: Sequence[Sequence[int]]) -> list[ChunkResult]:
    """One chunk of token ids for each of ``envs`` (HTTP sessions), each server's share in one
    ``/step_many`` request. A session's error is raised after every session was stepped (the
    others' results are lost to the caller then, so check ids first)."""
    if len(envs) != len(chunks):
        raise InvalidArgumentError(
            f"{len(envs)} envs but {len(chunks)} chunks; pass one chunk per env"
        )
    if any(env._link.protocol != "http" for env in envs):
        raise InvalidArgumentError(
            "step_chunks needs HTTP sessions (RemoteEnv(..., protocol='http'))"
        )
    by_server: dict[str, list[int]] = {}
    for k, env in enumerate(envs):
        by_server.setdefault(env._link.url, []).append(k)
    results: list[Any] = [None] * len(envs)
    for indices in by_server.values():
        steps = [
            {"session_id": envs[k].session_id, "action": {"tokens": [_token(t) for t in chunks[k]]}}
            for k in indices
        ]
        answer = envs[indices[0]]._link._post("/step_many", {"steps": steps})
        for k, result in zip(indices, answer["results"]):
            results[k] = result
    for result in results:
        if "error" in result:
            raise remote_error(result["error"])
    return [env._chunk_result(r) for env, r in zip(envs, results)]


class RemoteVectorEnv(_Described, VectorEnv):
    """``num_envs`` slots run as native vector sessions on one or more servers.

    ``RemoteVectorEnv(url, num_envs, protocol="http", token=None, turns=False,
    autoreset_mode="NextStep", timeout=60.0)``: ``url`` is one server's ``http://host:port`` or
    a list of them (``textgym serve --workers K`` prints K); the slots are split over them in
    contiguous blocks, and each step steps every server at once. Observations, rewards, infos
    (Gymnasium's vector layout) and seeding (``reset(seed=s)`` seeds slot ``i`` with ``s + i``)
    equal ``gym.make_vec(id, num_envs)``'s. Actions are checked here before any server steps;
    with several servers, a step that fails on one server (a scorer error) has stepped the
    others.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        num_envs: int = 1,
        protocol: str = "http",
        token: str | None = None,
        turns: bool = False,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        timeout: float = 60.0,
    ):
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise InvalidArgumentError("url must be a server URL or a non-empty list of them")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise InvalidArgumentError(f"num_envs must be an int >= 1, got {num_envs!r:.40}")
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise InvalidArgumentError(
                f"autoreset_mode must be one of {[m.value for m in AutoresetMode]}, got {autoreset_mode!r:.40}"
            ) from None
        blocks = [b for b in np.array_split(np.arange(num_envs), len(urls)) if b.size]
        self._blocks = [slice(int(b[0]), int(b[-1]) + 1) for b in blocks]
        self._links = [
            Link(
                u,
                protocol,
                token,
                timeout,
                {
                    "num_envs": b.stop - b.start,
                    "turns": bool(turns),
                    "autoreset_mode": autoreset_mode.value,
                },
            )
            for u, b in zip(urls, self._blocks)
        ]
        self._pool = ThreadPoolExecutor(len(self._links)) if len(self._links) > 1 else None
        descriptions = self._each(lambda link: link.open())
        self._describe(descriptions[0])
        self.num_envs = num_envs
        self.turns = bool(turns)
        self.autoreset_mode = autoreset_mode
        self.metadata = {"autoreset_mode": autoreset_mode}
        self.single_observation_space = decode_space(self._description["observation_space"])
        self.single_action_space = self._single_action_space = decode_space(
            self._description["action_space"]
        )
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._obs: list[Any] = [None] * len(self._links)

    def _each(self, fn: Any, *per_link: Sequence[Any]) -> list[Any]:
        """``fn(link, *args)`` for every link, in parallel over servers."""
        calls = [(link, *(a[k] for a in per_link)) for k, link in enumerate(self._links)]
        if self._pool is None:
            return [fn(*c) for c in calls]
        return list(self._pool.map(lambda c: fn(*c), calls))

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ):
        seeds = vector_seeds(seed, self.num_envs)
        if options is not None and not isinstance(options, dict):
            raise InvalidArgumentError(f"options must be a dict or None, got {options!r:.60}")
        per_link = [self._block_options(options, b) for b in self._blocks]
        todo = [k for k, o in enumerate(per_link) if o is not False]
        results: list[Any] = [None] * len(self._links)
        answers = self._each(
            lambda link, block, opts: (
                None
                if opts is False
                else link.reset([seeds[i] for i in range(block.start, block.stop)], opts)
            ),
            self._blocks,
            per_link,
        )
        for k in todo:
            results[k] = answers[k]
            self._obs[k] = self._part_obs(answers[k], k)
        infos = _merge_infos(
            [decode(r["info"]) if r else {} for r in results], self._blocks, self.num_envs
        )
        return self._merge_obs(), infos

    def _block_options(self, options: dict[str, Any] | None, block: slice) -> Any:
        """A block's share of the reset options (False: the reset mask leaves it out)."""
        if options is None:
            return None
        out = dict(options)
        if "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise InvalidArgumentError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) selecting at least one env"
                )
            if not mask[block].any():
                return False
            out["reset_mask"] = mask[block]
        for key in ("prompt", "secret"):  # per-slot episode options (TextGen, dialogues)
            if isinstance(options.get(key), (list, tuple)) and len(options[key]) == self.num_envs:
                out[key] = list(options[key][block])
        return out

    def step(self, actions: Any):
        if self.turns:
            if not isinstance(actions, (list, tuple, np.ndarray)) or len(actions) != self.num_envs:
                raise InvalidArgumentError(
                    f"actions must be a list of {self.num_envs} turns, got {actions!r:.60}"
                )
            turns = [a.tolist() if isinstance(a, np.ndarray) else a for a in actions]
            parts = [{"turns": turns[b]} for b in self._blocks]
        else:
            ids = _token_array(actions, self.num_envs, int(self.single_action_space.n))
            parts = [{"actions": ids[b].tolist()} for b in self._blocks]
        answers = self._each(lambda link, action: link.step(action), parts)
        for k, answer in enumerate(answers):
            self._obs[k] = self._part_obs(answer, k)
        rewards = np.concatenate([np.atleast_1d(decode(a["reward"])) for a in answers])
        terminated = np.concatenate([np.atleast_1d(decode(a["terminated"])) for a in answers])
        truncated = np.concatenate([np.atleast_1d(decode(a["truncated"])) for a in answers])
        infos = _merge_infos([decode(a["info"]) for a in answers], self._blocks, self.num_envs)
        return self._merge_obs(), rewards, terminated, truncated, infos

    def _part_obs(self, answer: dict[str, Any], k: int) -> Any:
        block = self._blocks[k]
        return decode_observation(
            answer["observation"], self.single_observation_space, block.stop - block.start
        )

    def _merge_obs(self) -> Any:
        if len(self._obs) == 1:
            return self._obs[0]
        if isinstance(self._obs[0], dict):
            return {key: np.concatenate([o[key] for o in self._obs]) for key in self._obs[0]}
        return tuple(t for o in self._obs for t in o)

    def control_points(self) -> list[Any]:
        """One :class:`~textgym.envs.control_points.ControlPoints` per slot, as the served
        vector env gives them (one request per server)."""
        return [p for points in self._each(lambda link: link.control_points()) for p in points]

    def action_masks(self) -> np.ndarray:
        """``(num_envs, V)`` bool, read-only: the served env's mask for every slot."""
        mask = self._single_mask()
        return np.broadcast_to(mask, (self.num_envs, mask.size))

    def render(self) -> None:
        return None

    def close_extras(self, **kwargs: Any) -> None:
        self._each(lambda link: link.close())
        if self._pool is not None:
            self._pool.shutdown()


def _merge_infos(parts: list[dict[str, Any]], blocks: list[slice], n: int) -> dict[str, Any]:
    """Vector infos of the blocks as one: ``infos[key]`` over all ``n`` slots (zeros or None
    where a block lacks the key), ``infos["_" + key]`` marking the slots that have it."""
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, Any] = {}
    for part, block in zip(parts, blocks):
        for key, value in part.items():
            if isinstance(value, dict):  # final_info: a vector info of its own
                merged.setdefault(key, [{} for _ in parts])
                continue
            if key not in merged:
                fill = None if value.dtype == object else 0
                merged[key] = np.full(n, fill, dtype=value.dtype)
            merged[key][block] = value
    for key, value in merged.items():
        if isinstance(value, list):
            merged[key] = _merge_infos([p.get(key, {}) for p in parts], blocks, n)
    return merged


def _token(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidTokenError(
            f"a token id must be an int, got {type(value).__name__} {value!r:.40}"
        )
    return int(value)


def _token_array(actions: Any, n: int, vocab: int) -> np.ndarray:
    """``actions`` as ``n`` token ids, checked as a textgym vector env checks them."""
    ids = np.asarray(actions)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer) or ids.dtype == np.bool_:
        raise InvalidTokenError(
            f"actions must be {n} integer token ids (shape ({n},)), got {ids.dtype} of shape {ids.shape}"
        )
    if ((ids < 0) | (ids >= vocab)).any():
        bad = int(ids[(ids < 0) | (ids >= vocab)][0])
        raise InvalidTokenError(f"action {bad} is not a token id in [0, {vocab})")
    return ids
