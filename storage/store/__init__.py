"""The content-addressed store: digests, objects (loose and packed) and directory manifests.

The bottom of storage: it knows bytes and names for bytes, nothing of workspaces,
pointers or remotes (``mlv.storage.workspace`` and ``mlv.storage.remote`` build on it).
"""
