"""Signing keys: the :class:`Keyring` that signs and verifies every payload.

Keys come from configuration, never from code:

* ``AIOFLOW_SECRET_KEY``: the current key; it signs everything sent.
* ``AIOFLOW_SECRET_KEYS_OLD``: comma-separated older keys, still accepted when
  verifying during a key rotation, never used to sign.

A key is the UTF-8 bytes of the variable's value, at least
:data:`MIN_KEY_BYTES` long. Each key is named on the wire by an 8-byte *key id*
derived from it with HMAC-SHA256 (it does not reveal the key).

Without ``AIOFLOW_SECRET_KEY`` the keyring is the *local* keyring: a random
per-user key created on first use in ``$AIOFLOW_HOME/local.key`` (default
``~/.aioflow``; see :mod:`.keyfile`), fine for in-process runs and local
checkpoints, and refused by :meth:`Keyring.require_production` for Redis and
Docker (other processes and machines do not share it). No public key signs
anything: the former development key is refused as a configured key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol, final

from ..errors import ConfigurationError
from .envelope import max_payload_bytes_from_env, validate_max_payload_bytes
from .keyfile import HOME_ENV, aioflow_home, load_or_create_local_key

__all__ = ["HOME_ENV", "MIN_KEY_BYTES", "OLD_KEYS_ENV", "SECRET_KEY_ENV", "Keyring", "SigningKey"]

SECRET_KEY_ENV = "AIOFLOW_SECRET_KEY"
OLD_KEYS_ENV = "AIOFLOW_SECRET_KEYS_OLD"
#: Shortest key accepted (bytes). ``secrets.token_urlsafe(32)`` gives 43 characters.
MIN_KEY_BYTES = 32
# Keys that were published (the development key of aioflow 0.1.0.dev0): anyone can
# sign with them, so they are refused as configured keys.
_PUBLISHED_KEYS = frozenset({b"aioflow-development-key/not-secret/never-use-in-production"})

_KEY_ID_LABEL = b"aioflow/key-id/v1"
_GENERATE_HINT = (
    'Generate a key with: python -c "import secrets; print(secrets.token_urlsafe(32))" '
    f"and set {SECRET_KEY_ENV} to it on the coordinator and on every worker."
)


@final
class SigningKey:
    """One secret key, ready to compute HMAC-SHA256 tags. Made by :class:`Keyring`.

    Its ``key_id`` names it on the wire: ``HMAC-SHA256(key, "aioflow/key-id/v1")[:8]``
    identifies the key without revealing it.
    """

    __slots__ = ("_proto", "key_id")

    def __init__(self, key: bytes) -> None:
        self.key_id = hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).digest()[:8]
        # A keyed HMAC object copied per message: the key schedule is computed once.
        self._proto = _keyed_hmac(key)

    def mac(self, header: bytes | memoryview, body: bytes | memoryview) -> bytes:
        """Return ``HMAC-SHA256(key, header || body)`` (32 bytes)."""
        h = self._proto.copy()
        h.update(header)
        h.update(body)
        return h.digest()

    def __repr__(self) -> str:
        return f"<SigningKey id={self.key_id.hex()}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("signing keys cannot be pickled; rebuild them from configuration")


class _Mac(Protocol):
    def copy(self) -> _Mac: ...
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


def _keyed_hmac(key: bytes) -> _Mac:
    # OpenSSL's HMAC object directly: its copy/update/digest are C calls, a third
    # faster than going through the pure-Python hmac.HMAC wrapper for small payloads.
    try:
        import _hashlib

        mac: _Mac = _hashlib.hmac_new(key, digestmod="sha256")
    except Exception:  # no OpenSSL build: the standard wrapper, same result
        mac = hmac.new(key, digestmod=hashlib.sha256)
    return mac


def _key_bytes(key: str | bytes, *, what: str) -> bytes:
    if isinstance(key, str):
        raw = key.encode("utf-8")
    elif isinstance(key, bytes | bytearray):
        raw = bytes(key)
    else:
        raise ConfigurationError(
            f"{what} must be str or bytes, got {type(key).__name__}", hint=_GENERATE_HINT
        )
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"{what} is {len(raw)} bytes long; at least {MIN_KEY_BYTES} are required",
            hint=_GENERATE_HINT,
        )
    if raw in _PUBLISHED_KEYS:
        raise ConfigurationError(
            f"{what} is aioflow's former development key, which is public: anything "
            "signed with it could have been forged by anyone",
            hint=_GENERATE_HINT,
        )
    return raw


@final
class Keyring:
    """The keys that sign and verify payloads, and the payload size limit.

    Args:
        current: the signing key (str: its UTF-8 bytes are used), at least 32 bytes.
        previous: older keys still accepted when verifying (key rotation).
        max_payload_bytes: size limit of one payload; ``None`` reads
            ``AIOFLOW_MAX_PAYLOAD_BYTES`` (default 64 MiB).

    Raises:
        ConfigurationError: a key is too short, not str/bytes, or the former public
            development key, or the limit is invalid.

    A keyring is immutable and safe to share between threads and tasks. It cannot
    be pickled: every process builds its own from configuration.
    """

    __slots__ = ("_current", "_keys", "_local", "_max_payload_bytes")

    def __init__(
        self,
        current: str | bytes,
        previous: Iterable[str | bytes] = (),
        *,
        max_payload_bytes: int | None = None,
    ) -> None:
        current_raw = _key_bytes(current, what=SECRET_KEY_ENV)
        self._current = SigningKey(current_raw)
        self._local: Path | None = None  # the key file, for the local keyring
        self._keys: dict[bytes, SigningKey] = {self._current.key_id: self._current}
        if isinstance(previous, str | bytes):
            raise ConfigurationError(
                "previous must be a list of keys, not a single str or bytes",
                hint="Write Keyring(current, [old_key]).",
            )
        for index, old in enumerate(previous):
            signing = SigningKey(_key_bytes(old, what=f"{OLD_KEYS_ENV} entry {index + 1}"))
            self._keys.setdefault(signing.key_id, signing)
        self._max_payload_bytes = (
            max_payload_bytes_from_env()
            if max_payload_bytes is None
            else validate_max_payload_bytes(max_payload_bytes)
        )

    # --- constructors --------------------------------------------------------------

    @classmethod
    def local(
        cls, home: str | os.PathLike[str] | None = None, *, max_payload_bytes: int | None = None
    ) -> Keyring:
        """Return the local keyring: this user's random key, created on first use.

        The key is :data:`~.keyfile.LOCAL_KEY_BYTES` random bytes in ``home/local.key``,
        a file only this user may read (mode 0600, in a 0700 directory created if
        needed). Processes creating it at the same time end up with the same key.
        Only in-process use accepts it (:meth:`require_production`): other machines
        do not have it.

        Args:
            home: the directory (default ``$AIOFLOW_HOME``, else ``~/.aioflow``).
            max_payload_bytes: size limit; ``None`` reads the environment.

        Returns:
            A keyring whose only key is the local key (``is_local=True``).

        Raises:
            ConfigurationError: the key file cannot be created or read, is accessible
                to other users, or has the wrong size.
        """
        directory = aioflow_home() if home is None else Path(home).expanduser()
        key, path = load_or_create_local_key(directory)
        ring = cls(key, max_payload_bytes=max_payload_bytes)
        ring._local = path
        return ring

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, max_payload_bytes: int | None = None
    ) -> Keyring:
        """Build the keyring from ``AIOFLOW_SECRET_KEY`` and ``AIOFLOW_SECRET_KEYS_OLD``.

        Without ``AIOFLOW_SECRET_KEY`` (unset or empty) this is the local keyring
        (:meth:`local`, in ``AIOFLOW_HOME`` of ``environ``); :meth:`require_production`
        refuses it for Redis and Docker.

        Args:
            environ: the environment to read (default ``os.environ``).
            max_payload_bytes: size limit; ``None`` reads ``AIOFLOW_MAX_PAYLOAD_BYTES``.

        Returns:
            The configured keyring.

        Raises:
            ConfigurationError: a key is too short or public, old keys are set without
                a current key, the size limit is invalid, or the local key file is
                unusable (see :meth:`local`).
        """
        env = os.environ if environ is None else environ
        current = env.get(SECRET_KEY_ENV, "").strip()
        previous = [k.strip() for k in env.get(OLD_KEYS_ENV, "").split(",") if k.strip()]
        if max_payload_bytes is None:
            max_payload_bytes = max_payload_bytes_from_env(env)
        if not current:
            if previous:
                raise ConfigurationError(
                    f"{OLD_KEYS_ENV} is set but {SECRET_KEY_ENV} is not",
                    hint=f"Set {SECRET_KEY_ENV} to the new key when rotating; "
                    f"{OLD_KEYS_ENV} only lists keys still accepted for verification.",
                )
            return cls.local(aioflow_home(env), max_payload_bytes=max_payload_bytes)
        return cls(current, previous, max_payload_bytes=max_payload_bytes)

    # --- properties ----------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """True when the signing key is this user's local key (:meth:`local`)."""
        return self._local is not None

    @property
    def key_id(self) -> str:
        """Hex id of the current (signing) key."""
        return self._current.key_id.hex()

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Hex ids of every key accepted for verification, the current one first."""
        return tuple(k.hex() for k in self._keys)

    @property
    def max_payload_bytes(self) -> int:
        """Largest payload, in bytes, signed or accepted with this keyring."""
        return self._max_payload_bytes

    @property
    def signing_key(self) -> SigningKey:
        """The current key (signs everything this process sends)."""
        return self._current

    def verification_key(self, key_id: bytes) -> SigningKey | None:
        """Return the accepted key with this raw 8-byte id, or ``None``."""
        return self._keys.get(key_id)

    # --- policy --------------------------------------------------------------------

    def require_production(self, *, backend: str) -> None:
        """Refuse the local key for any backend but the in-process one.

        Args:
            backend: the backend's name or URL (``"memory"``, ``"redis"``,
                ``"redis://host:6379/0"``, ``"docker"`` ...). Only its scheme is
                used (and shown: URLs may hold passwords).

        Raises:
            ConfigurationError: the keyring is the local keyring and the backend is not
                in-process.
        """
        scheme = backend.split("://", 1)[0].strip().lower()
        if scheme == "memory" or self._local is None:
            return
        raise ConfigurationError(
            f"the {scheme!r} backend sends payloads to other processes, but no "
            f"{SECRET_KEY_ENV} is configured: payloads would be signed with this user's "
            f"local key ({self._local}), which workers and other machines do not share",
            hint=_GENERATE_HINT,
        )

    def __repr__(self) -> str:
        return (
            f"Keyring(key_id={self.key_id!r}, accepted={len(self._keys)}, "
            f"is_local={self.is_local}, max_payload_bytes={self._max_payload_bytes})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a Keyring cannot be pickled (it holds secrets); build it in each process "
            "with Keyring.from_env()"
        )

    def __copy__(self) -> Keyring:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Keyring:
        return self
