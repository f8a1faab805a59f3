"""The server's sessions: one env each, their limits, and how a request steps them.

A :class:`Session` holds one env built from the served id: a single env (``gym.make``), a
native vector env (``gym.make_vec``, ``num_envs`` slots) or either under text turns
(:class:`~textgym.turns.TextTurns`, :class:`~textgym.turns.VectorTextTurns`). The
:class:`SessionStore` creates, finds, steps and reclaims them; the web layer
(:mod:`textgym.server.app`) only turns requests into these calls and results into JSON.

Stepping a single session with a chunk of token ids (``{"tokens": [...]}``) feeds them through
the env's own ``step`` one by one and stops at the first **control point**: the episode ended,
the env appended tokens of its own (a tool's result, a partner's reply: ``num_generated``
advanced by more than the agent's one token) or a step returned a non-empty info. The client
then continues from the env's ids. Every id of a chunk is checked before the first is stepped,
and a chunk whose step fails (a scorer error) is rolled back whole: a rejected request changes
nothing.
"""

from __future__ import annotations

import inspect
import threading
import time
import uuid
from typing import Any

import gymnasium as gym
import numpy as np

from textgym.errors import InvalidArgumentError, InvalidTokenError
from textgym.server.protocol import (
    CAPACITY_REACHED,
    SESSION_NOT_FOUND,
    VALIDATION_ERROR,
    ProtocolError,
    decode,
    encode,
    encode_observation,
    encode_space,
)
from textgym.turns import TextTurns, VectorTextTurns

KINDS = ("single", "vector")


class Session:
    """One env and its bookkeeping. ``lock`` serialises the requests that use it."""

    def __init__(self, env: Any, num_envs: int | None, turns: bool, autoreset_mode: str | None):
        self.id = uuid.uuid4().hex
        self.env = env
        self.num_envs = num_envs  # None: a single env
        self.turns = turns
        self.autoreset_mode = autoreset_mode
        self.lock = threading.Lock()
        self.created = self.last_used = time.monotonic()
        self.step_count = 0
        self.episode_id: str | None = None
        self.num_generated: int | None = None  # a single token session's, after its last call

    @property
    def slots(self) -> int:
        return 1 if self.num_envs is None else self.num_envs

    def touch(self) -> None:
        self.last_used = time.monotonic()


class SessionStore:
    """The sessions of one served id, within ``max_sessions`` episode slots (a vector session
    takes ``num_envs``); a session unused for ``idle_timeout`` seconds is closed by
    :meth:`reap`."""

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any] | None = None,
        max_sessions: int = 64,
        idle_timeout: float = 300.0,
        max_chunk: int = 4096,
    ):
        if env_id not in gym.registry:
            raise InvalidArgumentError(
                f"unknown environment id {env_id!r}; `textgym list` shows the ids"
            )
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.max_chunk = max_chunk
        self._sessions: dict[str, Session] = {}
        self._reserved = 0  # slots of sessions being built
        self._lock = threading.Lock()
        # Built once: the id's spaces, docs and tokenizer for /metadata and /schema, and a check
        # that the id and its arguments make an env at all (before the server listens).
        self.probe = gym.make(env_id, **self.env_kwargs)
        # A first episode here, in one thread: the lazy imports and per-process caches an env
        # fills on first use (reasoning-gym's dataset registry, generators) are built before
        # sessions reset concurrently in worker threads.
        self.probe.reset(seed=0)

    # -- the session table -----------------------------------------------------------------

    @property
    def slots_in_use(self) -> int:
        return sum(s.slots for s in self._sessions.values()) + self._reserved

    def create(
        self, num_envs: Any = None, turns: Any = False, autoreset_mode: Any = None
    ) -> Session:
        """A new session (checked first; refused past ``max_sessions`` slots)."""
        if num_envs is not None and (
            isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1
        ):
            raise ProtocolError(
                VALIDATION_ERROR, f"num_envs must be an int >= 1, got {num_envs!r:.60}"
            )
        if not isinstance(turns, bool):
            raise ProtocolError(VALIDATION_ERROR, f"turns must be true or false, got {turns!r:.60}")
        if autoreset_mode is not None and (num_envs is None or not isinstance(autoreset_mode, str)):
            raise ProtocolError(
                VALIDATION_ERROR, "autoreset_mode (a string) applies to a vector session only"
            )
        slots = 1 if num_envs is None else num_envs
        with self._lock:
            if self.slots_in_use + slots > self.max_sessions:
                raise ProtocolError(
                    CAPACITY_REACHED,
                    f"the server holds {self.slots_in_use} of its {self.max_sessions} episode "
                    f"slots and this session needs {slots}; close sessions or start the server "
                    f"with a larger --max-sessions",
                )
            self._reserved += slots
        try:
            session = Session(
                self._make(num_envs, turns, autoreset_mode), num_envs, turns, autoreset_mode
            )
        finally:
            with self._lock:
                self._reserved -= slots
        with self._lock:
            self._sessions[session.id] = session
        return session

    def _make(self, num_envs: int | None, turns: bool, autoreset_mode: str | None) -> Any:
        extra = {} if autoreset_mode is None else {"autoreset_mode": autoreset_mode}
        if num_envs is None:
            env = gym.make(self.env_id, **self.env_kwargs)
            return TextTurns(env) if turns else env
        if turns:
            envs = [gym.make(self.env_id, **self.env_kwargs) for _ in range(num_envs)]
            return VectorTextTurns(envs, **extra)
        return gym.make_vec(self.env_id, num_envs=num_envs, **extra, **self.env_kwargs)

    def get(self, session_id: Any) -> Session:
        with self._lock:
            session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise ProtocolError(
                SESSION_NOT_FOUND,
                f"no session {session_id!r:.80} on this server (closed, reclaimed after "
                f"{self.idle_timeout:g} s idle, or the server restarted); reset to start a new one",
            )
        return session

    def close(self, session_id: str) -> bool:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            with session.lock:
                session.env.close()
        return session is not None

    def close_all(self) -> None:
        for session_id in list(self._sessions):
            self.close(session_id)

    def reap(self) -> list[str]:
        """Close the sessions idle for longer than ``idle_timeout`` (a busy one never)."""
        now = time.monotonic()
        with self._lock:
            idle = [
                s
                for s in self._sessions.values()
                if now - s.last_used > self.idle_timeout and not s.lock.locked()
            ]
        for session in idle:
            self.close(session.id)
        return [s.id for s in idle]

    # -- what a session looks like ---------------------------------------------------------

    def describe(self, session: Session) -> dict[str, Any]:
        """The session's id, kind and spaces (single spaces for a vector session), its env's
        tokenizer and static action mask: what a client needs before its first reset."""
        env = session.env
        single = session.num_envs is not None
        obs_space = env.single_observation_space if single else env.observation_space
        act_space = env.single_action_space if single else env.action_space
        return {
            "session_id": session.id,
            "env_id": self.env_id,
            "num_envs": session.num_envs,
            "turns": session.turns,
            "observation_space": encode_space(obs_space),
            "action_space": encode_space(act_space),
            "autoreset_mode": None if not single else str(env.metadata["autoreset_mode"].value),
            **self.tokenizer_info(),
        }

    def describe_probe(self) -> dict[str, Any]:
        """The served id's single-env spaces and tokenizer (for ``/schema``)."""
        return {
            "observation_space": encode_space(self.probe.observation_space),
            "action_space": encode_space(self.probe.action_space),
            **self.tokenizer_info(),
        }

    def tokenizer_info(self) -> dict[str, Any]:
        """The tokenizer's name (when a client can load it by name), size, and the ids
        ``action_masks()`` marks False."""
        base = self.probe.unwrapped
        tokenizer = getattr(base, "tokenizer", None)
        name = self.env_kwargs.get("tokenizer", gym.spec(self.env_id).kwargs.get("tokenizer"))
        if name is None:
            default = inspect.signature(type(base)).parameters.get("tokenizer")
            name = None if default is None else default.default
        masked = []
        if hasattr(base, "action_masks"):
            masked = np.flatnonzero(~np.asarray(base.action_masks())).tolist()
        return {
            "tokenizer": name if isinstance(name, str) else None,
            "tokenizer_size": None if tokenizer is None else len(tokenizer),
            "masked_ids": masked,
        }

    # -- reset and step ----------------------------------------------------------------------

    def reset(
        self, session: Session, seed: Any = None, options: Any = None, episode_id: Any = None
    ) -> dict[str, Any]:
        """Reset ``session``'s env; ``episode_id`` (OpenEnv's reset field) names the episode in
        :meth:`state`, else a fresh id does."""
        if episode_id is not None and (
            not isinstance(episode_id, str) or not 1 <= len(episode_id) <= 255
        ):
            raise ProtocolError(
                VALIDATION_ERROR,
                f"episode_id must be a string of 1 to 255 characters, got {episode_id!r:.60}",
            )
        options = decode(options) if options is not None else None
        obs, info = session.env.reset(seed=seed, options=options)
        session.episode_id = uuid.uuid4().hex if episode_id is None else episode_id
        session.step_count = 0
        if session.num_envs is None and not session.turns:
            session.num_generated = int(obs["num_generated"][0])
        return {
            "observation": encode_observation(obs),
            "reward": None,
            "done": False,
            "info": encode(info),
        }

    def step(self, session: Session, action: Any) -> dict[str, Any]:
        """Step ``session`` with ``action``: ``{"token": id}`` or ``{"tokens": [ids]}`` (a single
        session), ``{"actions": [...]}`` (a vector session), ``{"turn": text or ids}`` or
        ``{"turns": [...]}`` (text turns)."""
        key = {
            (False, False): "tokens",
            (True, False): "actions",
            (False, True): "turn",
            (True, True): "turns",
        }[(session.num_envs is not None, session.turns)]
        allowed = ("token", "tokens") if key == "tokens" else (key,)
        if not isinstance(action, dict) or len(action) != 1 or next(iter(action)) not in allowed:
            raise ProtocolError(
                VALIDATION_ERROR,
                f"this session's action is an object with one key of {list(allowed)}, got "
                f"{action!r:.80}",
            )
        value = action[next(iter(action))]
        if key == "tokens":
            return self._step_tokens(session, [value] if "token" in action else value)
        if key == "turn":
            obs, reward, terminated, truncated, info = session.env.step(value)
            done = bool(terminated or truncated)
        else:
            obs, reward, terminated, truncated, info = session.env.step(
                value if session.turns else np.asarray(value)
            )
            done = bool(np.any(terminated | truncated))
        session.step_count += 1
        return {
            "observation": encode_observation(obs),
            "reward": encode(reward),
            "done": done,
            "terminated": encode(terminated),
            "truncated": encode(truncated),
            "info": encode(info),
        }

    def _step_tokens(self, session: Session, tokens: Any) -> dict[str, Any]:
        """Step a chunk of token ids up to its first control point (see the module doc)."""
        vocab = int(session.env.action_space.n)
        if not isinstance(tokens, list) or not 1 <= len(tokens) <= self.max_chunk:
            raise ProtocolError(
                VALIDATION_ERROR,
                f"tokens must be a list of 1 to {self.max_chunk} token ids, got {tokens!r:.80}",
            )
        for k, t in enumerate(tokens):
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
                raise InvalidTokenError(
                    f"tokens[{k}] = {t!r:.40} is not a token id in [0, {vocab}) (the env's "
                    f"vocabulary); nothing was stepped"
                )
        base = session.env.unwrapped
        saved = base.save_state(), session.num_generated
        rewards: list[float] = []
        terminated = truncated = False
        info: dict[str, Any] = {}
        try:
            for token in tokens:
                obs, reward, terminated, truncated, info = session.env.step(token)
                rewards.append(float(reward))
                now = int(obs["num_generated"][0])
                env_acted = session.num_generated is not None and now - session.num_generated > 1
                session.num_generated = now
                if terminated or truncated or env_acted or info:
                    break
        except BaseException:
            base.restore_state(saved[0])
            session.num_generated = saved[1]
            raise
        session.step_count += len(rewards)
        return {
            "observation": encode_observation(obs),
            "reward": float(np.sum(rewards, dtype=np.float64)),
            "done": bool(terminated or truncated),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
            "info": encode(info),
            "rewards": rewards,
            "used": len(rewards),
        }

    def control_points(self, session: Session) -> dict[str, Any]:
        """The env's control points (:mod:`textgym.envs.control_points`): one object for a
        single session, a list for a vector one."""
        if session.turns:
            raise ProtocolError(VALIDATION_ERROR, "a text-turns session has no control points")
        env = session.env
        points = (
            env.control_points()
            if session.num_envs is not None
            else env.get_wrapper_attr("control_points")()
        )
        return {"control_points": encode(points if isinstance(points, list) else [points])}

    def state(self, session: Session) -> dict[str, Any]:
        """OpenEnv's state: ``episode_id`` and ``step_count``, plus the session's own fields."""
        return {
            "episode_id": session.episode_id,
            "step_count": session.step_count,
            "session_id": session.id,
            "num_envs": session.num_envs,
            "idle_seconds": round(time.monotonic() - session.last_used, 3),
        }
