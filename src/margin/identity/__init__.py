"""Virtual API keys: generation and hashing, the key service (create, rotate, revoke, look up with a
short cache), and the principal a key stands for (org > team > user > key, tags, endpoint class,
model and tier restrictions, its own budget and rate limits)."""

from margin.identity.key_spec import KeyBudget, KeyPolicy, KeySpec
from margin.identity.keys import hash_secret, new_key_id, new_secret, public_prefix
from margin.identity.principals import principal_of, public_view
from margin.identity.service import KeyService

__all__ = [
    "KeyBudget",
    "KeyPolicy",
    "KeyService",
    "KeySpec",
    "hash_secret",
    "new_key_id",
    "new_secret",
    "principal_of",
    "public_prefix",
    "public_view",
]
