"""The remote layer: stores that clones share, on any fsspec URL — push, fetch, fsck and gc of a
remote, damage markers, the multipart uploads, and workers' own caches. Built on
``mlv.storage.workspace`` and ``mlv.storage.store``.
"""
