"""Adapters that put textgym's ids inside other libraries' trainers.

* :mod:`textgym.integrations.trl`: TRL's ``GRPOTrainer`` on any textgym id, rewarded by the
  env's own scorer (single-turn ids) or by whole episodes played through the env (multi-turn
  ids). Needs the ``trl`` extra only when its functions are called.
* :mod:`textgym.integrations.text_env`: any id as a plain text environment (a string turn in,
  the environment's text out, the exchange as chat messages) for text-level agent frameworks.
* :mod:`textgym.integrations.gem`: those text environments registered with GEM
  (``gem.make("textgym:<id>")``; needs ``gem-llm``).
"""
