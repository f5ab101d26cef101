"""kdforge: knowledge distillation for PyTorch."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `kdforge.Distiller` without importing torch on `import kdforge` (the CLI's start-up stays quick)
    if name in ("Distiller", "DistillerOutput"):
        from kdforge import distiller

        return getattr(distiller, name)
    raise AttributeError(f"module 'kdforge' has no attribute {name!r}")
