"""The mirrored two-arm cell. Importing this package does not import mujoco or torch.

Importing it registers the Gymnasium id ``MirrorArmPickPlace-v0`` (entry point
``mirror_arm_sim.env:MirrorArmEnv``, which imports mujoco only when the env is made).
"""

ENV_ID = "MirrorArmPickPlace-v0"


def _register() -> None:
    try:
        import gymnasium
    except ImportError:  # the env is optional for users of the mirror map / HDF5 layout only
        return
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="mirror_arm_sim.env:MirrorArmEnv")


_register()
