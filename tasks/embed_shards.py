"""Scale-out tasks of the text embedding: one task per corpus row range (see tomcap.embed.shards)."""
from __future__ import annotations

from tomcap.embed.shards import run_embed_shard

from .stages import stage_task

embed_shard_task = stage_task("tomcap.embed.shards", run_embed_shard)
