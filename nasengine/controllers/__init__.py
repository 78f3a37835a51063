"""The generic controllers: they use only a space's ``sample`` / ``mutate`` / ``crossover`` / JSON, so they
run on any registered search space.

* ``random`` — :class:`RandomSearch` (``population_size``, ``max_tries``): uniform samples, no repeats
  where the space allows;
* ``evolution`` — :class:`RegularizedEvolution` (``population_size``, ``tournament_size``, ``max_tries``):
  aging evolution, Real et al. 2019;
* ``nsga2`` — :class:`NSGA2` (``population_size``, ``crossover_prob``, ``mutation_prob``, ``max_tries``):
  NSGA-II with constraint domination on pymoo's sorting and crowding, Deb et al. 2002;
* ``reinforce`` — :class:`Reinforce`: an autoregressive LSTM policy over the space's vector encoding,
  trained by REINFORCE (:mod:`nasengine.controllers.policy` has the policy-gradient helper and the policy),
  on :class:`PolicyController`, the ask/tell machinery every policy-gradient controller (plugins' too) builds on.

All take ``seed`` (their only randomness is ``self.rng``); ``ask()`` without ``n`` asks ``population_size``
genomes (one generation); an unknown or bad option raises :class:`~nasengine.errors.ConfigError` naming it.

Every controller's whole state (population with objectives, ages, pending genomes, rng) is plain data in
``state_dict()``, genomes stored as the space's JSON; a controller restored with ``load_state_dict`` asks
exactly what the original would have. :mod:`nasengine.controllers.pareto` has the Pareto-front and
hypervolume helpers. Each controller declares its options as an attrs ``Options`` class (the checks of
:mod:`nasengine.options`); a plugin controller extends ``Parent.Options`` the same way.
"""
from __future__ import annotations

from nasengine.controllers._common import fitness_of
from nasengine.controllers.evolution import RegularizedEvolution
from nasengine.controllers.nsga2 import NSGA2
from nasengine.controllers.pareto import hypervolume, non_dominated, pareto_front
from nasengine.controllers.random_search import RandomSearch
from nasengine.controllers.reinforce import PolicyController, Reinforce

__all__ = [
    "RandomSearch",
    "RegularizedEvolution",
    "NSGA2",
    "Reinforce",
    "PolicyController",
    "BUILTIN_CONTROLLERS",
    "pareto_front",
    "non_dominated",
    "hypervolume",
    "fitness_of",
]

#: name -> class, registered by the built-in plugin (:mod:`nasengine.builtin`).
BUILTIN_CONTROLLERS = {"random": RandomSearch, "evolution": RegularizedEvolution, "nsga2": NSGA2,
                       "reinforce": Reinforce}
