"""
The model-loading hook: a model knob -> what to load, and the load. A knob names a local folder or a hub id; with SMOKE
on (cfg.SMOKE) a knob of a model family smoke.py knows is replaced by that family's tiny random stand-in, built offline
and cached. It sits above core/ and smoke.py, so core never imports the test-model factory.
"""
from core import devices, knobs
from smoke import smoke_model


def _tiny(smoke_family, smoke):
    # smoke=None: the stage passed no cfg.SMOKE (a few do not yet): the SMOKE environment variable decides
    return bool(smoke_family) and (knobs.smoke_enabled() if smoke is None else bool(smoke))


def model_path(name, smoke_family=None, smoke=None):
    """The folder or hub id to load for the model knob `name`; with `smoke` (cfg.SMOKE) on and a family, the tiny
    random model of that family."""
    return smoke_model(smoke_family) if _tiny(smoke_family, smoke) else devices.local_or_hub(name)


def load_model(loader, name, smoke_family=None, smoke=None, **kwargs):
    """`loader(path, **kwargs)` for the model knob `name` (see model_path), one clear line if it can't be had."""
    tiny = _tiny(smoke_family, smoke)
    path = smoke_model(smoke_family) if tiny else devices.local_or_hub(name)
    return devices.call_loader(loader, path, name, quiet=tiny, **kwargs)
