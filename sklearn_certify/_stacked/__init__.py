"""Vectorised training: many small models trained as one batched torch program.

* :mod:`._engine` -- forward and backward passes, loss gradients, Adam, blocks;
* :mod:`._heads` -- linear and one-hidden-layer heads (``LinearHead`` bases);
* :mod:`._nets` and :mod:`._skorch_replica` -- ``MultiLabelNet`` bases, replicating
  skorch's training bit for bit;
* :mod:`._trainers` -- which trainer an ensemble uses.
"""
