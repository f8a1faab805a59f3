"""Any textgym id over the network: ``textgym serve`` and the Gymnasium clients.

* :mod:`textgym.server.serve`: the ``textgym serve ID`` command (uvicorn, one or more processes).
* :mod:`textgym.server.app`: OpenEnv's HTTP and WebSocket protocol (FastAPI).
* :mod:`textgym.server.sessions`: the sessions (one env each), limits, chunked token steps.
* :mod:`textgym.server.protocol`: exact JSON for values, spaces and errors.
* :mod:`textgym.server.client`: :class:`RemoteEnv`, :class:`RemoteVectorEnv`, :func:`step_chunks`.

The server needs the ``serve`` extra (fastapi, uvicorn, httptools, websockets); the client needs
only the standard library for HTTP and websockets for ``protocol="ws"``. See docs/serving.md.
"""

import gymnasium as gym

from textgym.server.client import ChunkResult, RemoteEnv, RemoteVectorEnv, step_chunks

# gym.make("textgym.server:textgym/Remote-v0", url=URL) (the module part imports this file), and
# gym.make_vec(..., num_envs=N, url=URL or [URL, ...]).
REMOTE_ID = "textgym/Remote-v0"
if REMOTE_ID not in gym.registry:
    gym.register(
        REMOTE_ID,
        entry_point="textgym.server.client:RemoteEnv",
        vector_entry_point="textgym.server.client:RemoteVectorEnv",
    )

__all__ = ["REMOTE_ID", "ChunkResult", "RemoteEnv", "RemoteVectorEnv", "step_chunks"]
