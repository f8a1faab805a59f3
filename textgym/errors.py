"""Exceptions textgym raises. Each message says what went wrong and how to fix it.

Every error textgym raises for bad input derives from :class:`TextgymError`, and also from the
builtin (or Gymnasium) class code written against would catch (``ValueError``, ``TypeError``,
``gymnasium.error.ResetNeeded``, ...). A call that raises one of them changes no state: the
environment (or learner) is exactly as it was before the call.
"""

from __future__ import annotations

from gymnasium.error import InvalidAction
from gymnasium.error import ResetNeeded as _GymResetNeeded


class TextgymError(Exception):
    """Base class of every error textgym raises for bad input, bad data or a failing scorer."""


class InvalidArgumentError(TextgymError, ValueError, TypeError):
    """An argument (constructor argument, ``reset`` seed or option, prompt) has the wrong type
    or value. The message names the argument and says what to pass."""


class InvalidTokenError(TextgymError, InvalidAction, ValueError):
    """An action that is not a valid token id for the environment's vocabulary."""


class ResetNeeded(TextgymError, _GymResetNeeded):
    """``step`` before the first ``reset``, or after the episode ended (a Gymnasium
    ``ResetNeeded``)."""


class EmptyPromptSetError(TextgymError, ValueError):
    """A prompt source (or one of its splits) holds no prompts."""


class PromptTooLongError(TextgymError, ValueError):
    """A prompt does not fit the environment's prompt budget and truncation is off."""


class ScorerError(TextgymError, RuntimeError):
    """A task's scorer (or a dialogue's partner) raised, or returned scores of the wrong shape,
    type or non-finite values, after the retries of the environment's ``retry`` policy. The
    step that called it changed nothing: call ``step`` again with the same action to retry (or
    make the environment with ``on_failure="end_episode"``: see :mod:`textgym.retry`)."""


class ScorerTimeoutError(ScorerError, TimeoutError):
    """A scorer, partner or tool call did not return within the timeout of the environment's
    ``retry`` policy (``scorer_timeout`` for a scorer)."""


class ModelNotFoundError(TextgymError, OSError):
    """A model or tokenizer name that is not an alias, not a local folder, and not in the Hugging
    Face cache, while the hub cannot be reached or has no such repository."""


class CheckpointError(TextgymError, ValueError):
    """A checkpoint or run file is missing, truncated, corrupted, holds NaN/inf weights, or does
    not fit this learner/model."""


class SandboxUnavailableError(TextgymError, RuntimeError):
    """The Python sandbox cannot isolate model-written code from the machine's files here (no
    mount namespace, no Landlock), or the isolation asked for is not available, and running it
    unisolated was not allowed (``PythonSandbox(allow_unisolated=True)``)."""


class RemoteEnvError(TextgymError, RuntimeError):
    """A textgym server (``textgym serve``) refused a request: its session limit is reached, the
    request is malformed or too large, or the env failed with an error that is not textgym's
    (the message names the server-side class). Errors textgym's env raises on the server arrive
    as their own class (``InvalidTokenError``, ``ResetNeeded``, ...)."""


class ServerUnavailableError(RemoteEnvError, ConnectionError):
    """The server cannot be reached, or the connection broke during a request (it was stopped,
    or restarted and lost its sessions). Once it is back, ``reset()`` starts a new session."""


class SessionNotFoundError(RemoteEnvError, LookupError):
    """The server holds no session with this id: it was closed, reclaimed after the idle
    timeout, or the server restarted. ``reset()`` on the client starts a new session."""


class ServerAuthError(RemoteEnvError, PermissionError):
    """The server wants its shared-secret token (``textgym serve --token``) and the request
    carried none or a wrong one: pass ``token=`` to the client (or set TEXTGYM_SERVE_TOKEN)."""
