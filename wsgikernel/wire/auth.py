"""The challenge a TCP connection to a kernel must pass: HMAC-SHA256 on a per-kernel key.

A Unix socket is guarded by its file's permissions (0600 in a 0700 runtime
dir); a TCP port is reachable by anyone who can route to it, so over TCP both
ends prove they hold the kernel's key before anything else is said:

    kernel -> asker   hello {protocol, auth: "hmac-sha256", nonce: S}
    asker  -> kernel  auth  {nonce: C, mac: HMAC(key, "client" S C)}
    kernel -> asker   auth_ok {mac: HMAC(key, "server" S C)}    (or error auth_failed, close)

Both nonces are fresh per connection, so a recorded exchange cannot be
replayed; the asker checks the kernel's proof too, so a stranger on the port
cannot pose as the kernel.  The MACs are compared in constant time.  The key
is 32 random bytes, written hex in ``kernel.key`` (0600) in the env directory
by whoever launches the kernel; the launcher's side and the kernel read the
same file.  Nothing is encrypted: on an untrusted network, tunnel it.
"""

import hashlib
import hmac
import os
import secrets

KEY_FILE = "kernel.key"
SCHEME = "hmac-sha256"
NONCE_BYTES = 16


class AuthError(Exception):
    pass


def create_key(env_dir):
    """A new key in ``env_dir``/kernel.key (0600, replacing any old one); its path."""
    path = os.path.join(env_dir, KEY_FILE)
    tmp = path + ".tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    os.replace(tmp, path)
    return path


def remove_key(path):
    """Remove a kernel's key file (only one named kernel.key: env.json is not trusted to
    name any other file); nothing if it is gone."""
    if path and os.path.basename(path) == KEY_FILE:
        try:
            os.unlink(path)
        except OSError:
            pass


def read_key(path):
    """The key in ``path``; AuthError if it is missing, unreadable or not a key."""
    if not path:
        raise AuthError("no key file for a TCP kernel")
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
        key = bytes.fromhex(text)
    except (OSError, ValueError) as exc:
        raise AuthError("cannot read the kernel's key %s: %s" % (path, exc)) from None
    if len(key) < 16:
        raise AuthError("the kernel's key %s is too short" % path)
    return key


def nonce():
    return secrets.token_hex(NONCE_BYTES)


def _mac(key, role, server_nonce, client_nonce):
    text = "%s\0%s\0%s" % (role, server_nonce, client_nonce)
    return hmac.new(key, text.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def client_proof(key, server_nonce, client_nonce):
    return _mac(key, "client", server_nonce, client_nonce)


def server_proof(key, server_nonce, client_nonce):
    return _mac(key, "server", server_nonce, client_nonce)


def verify(expected, given):
    """``given`` is the proof ``expected`` (constant time; anything else is just False)."""
    return isinstance(given, str) and given.isascii() and hmac.compare_digest(expected, given)
