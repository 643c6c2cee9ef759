"""The generation model profiles Vitrine knows (`pipelines.models.generation_models`), looked up by name.

What a profile holds: `pipelines.models.profile_spec.ModelProfile`.
"""

from __future__ import annotations

from pipelines.errors import InputError
from pipelines.models import generation_models  # noqa: F401 - its import registers the known profiles
from pipelines.models.profile_spec import FAMILIES, ROLES, ModelProfile, register_profile, registered_profiles

__all__ = ["FAMILIES", "ROLES", "ModelProfile", "get_profile", "list_profiles", "register_profile"]


def get_profile(name: str, *, key: str | None = None) -> ModelProfile:
    """The registered profile called ``name`` (a repo id, or ``repo id:variant``).

    Args:
        name (`str`): the profile's name (see `ModelProfile.name`).
        key (`str`, *optional*): the setting the name came from, for the error message.

    Raises:
        `InputError`: no profile has that name (the message lists the known ones).
    """
    profiles = registered_profiles()
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles)) or "none"
        raise InputError(f"no generation profile {name!r}; known profiles: {known}", key=key) from None


def list_profiles(family: str | None = None, role: str | None = None) -> list[ModelProfile]:
    """Registered profiles, in registration order (the preferred one of a role first).

    Args:
        family (`str`, *optional*): only ``flux`` or ``sdxl`` profiles.
        role (`str`, *optional*): only profiles of this role.
    """
    return [p for p in registered_profiles().values()
            if (family is None or p.family == family) and (role is None or p.role == role)]
