"""Adapters that put textgym's ids inside other libraries' trainers.

* :mod:`textgym.integrations.trl`: TRL's ``GRPOTrainer`` on any textgym id, rewarded by the
  env's own scorer (single-turn ids) or by whole episodes played through the env (multi-turn
  ids). Needs the ``trl`` extra only when its functions are called.
"""
