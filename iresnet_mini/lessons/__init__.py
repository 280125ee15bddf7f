"""The lessons' companions: one per notebook, ``lessons/nbNN`` for ``notebooks/NN_*.ipynb``.

Each holds the lesson's experiments (a module named for them, e.g. ``nb01.dynamics``), its
figures and widget panels (``nbNN.figures``) and its exercises' checks (``nbNN.checks``); what
several lessons share is in ``figures`` (the theme), ``checks`` (how a check reports) and
``widgets`` (the c slider and the figure panel). A lesson's companion may build on an earlier
lesson's, never on a later one, and the core (``iresnet_mini``'s other modules) uses none of them.
"""
