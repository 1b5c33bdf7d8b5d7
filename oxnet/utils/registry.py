"""detectron2's ``Registry`` keyed by each object's ``name`` and with errors that list what is known."""

from detectron2.utils.registry import Registry

__all__ = ["NamedRegistry"]


class NamedRegistry(Registry):
    """A detectron2 :class:`~detectron2.utils.registry.Registry` whose key is the registered object's
    ``name`` attribute (a config value such as ``"sfl"``) rather than its Python name.

    ``register`` works as detectron2's (``@REGISTRY.register()`` on a class, or ``REGISTRY.register(obj)``)
    and returns the object; a second object under a name already taken, or ``get`` of an unknown name,
    raises ``ValueError`` listing the registered names.
    """

    def _do_register(self, name, obj):
        if name in self._obj_map:
            raise ValueError(
                f"{self._name}: {name!r} is already registered; registered: {', '.join(self.names())}"
            )
        self._obj_map[name] = obj

    def register(self, obj=None):
        if obj is None:

            def deco(cls):
                self._do_register(cls.name, cls)
                return cls

            return deco
        self._do_register(obj.name, obj)
        return obj

    def get(self, name):
        if name not in self._obj_map:
            raise ValueError(f"{self._name}: unknown name {name!r}; registered: {', '.join(self.names())}")
        return self._obj_map[name]

    def names(self):
        """The registered names, in registration order."""
        return list(self._obj_map)
