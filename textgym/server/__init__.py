"""Any textgym id over the network: ``textgym serve`` and the Gymnasium clients.

* :mod:`textgym.server.serve`: the ``textgym serve ID`` command (uvicorn, one or more processes).
* :mod:`textgym.server.app`: OpenEnv's HTTP and WebSocket protocol (FastAPI).
* :mod:`textgym.server.sessions`: the sessions (one env each), limits, chunked token steps.
* :mod:`textgym.server.protocol`: exact JSON for values, spaces and errors.
* :mod:`textgym.server.client`: :class:`RemoteEnv`, :class:`RemoteVectorEnv`, :func:`step_chunks`.

The server needs the ``serve`` extra (fastapi, uvicorn, httptools, websockets); the client needs
only the standard library for HTTP and websockets for ``protocol="ws"``. See docs/serving.md.
"""

from textgym.server.client import ChunkResult, RemoteEnv, RemoteVectorEnv, step_chunks

__all__ = ["ChunkResult", "RemoteEnv", "RemoteVectorEnv", "step_chunks"]
