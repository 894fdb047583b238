"""Scale-out tasks of the text embedding: one task per corpus row range (see tomcap.embed.shards)."""
from __future__ import annotations

from prefect import task

from tomcap.embed.shards import corpus_row_ranges, run_embed_shard

from .stages import stage_task

embed_shard_task = stage_task("tomcap.embed.shards", run_embed_shard)
row_ranges_task = task(corpus_row_ranges, name="embed-row-ranges", task_run_name="embed-row-ranges")
