"""The CogVideoX backbone of the world model (:class:`~vap_env.model.cogvideox.model.ActionToVideoModel`).

- :mod:`~vap_env.model.cogvideox.model`: the model (architecture, sampling, ``save_pretrained``);
- :mod:`~vap_env.model.cogvideox.loaders`: ``from_pretrained``, ``from_pretrained_base``, ``from_cogvideox``
  and ``load_config``;
- :mod:`~vap_env.model.cogvideox.training`: training stages, trainable parts and the diffusion loss;
- :mod:`~vap_env.model.cogvideox.transformer`: diffusers' CogVideoX transformer with control inputs;
- :mod:`~vap_env.model.cogvideox.controlnet`: the ControlNet, the state embedder and the null text.

It is registered as ``"ActionToVideoModel"`` in :data:`vap_env.model.loading.BACKBONES`.
"""
