import asyncio
from sapixdb_boboyka import BoboykaClient

async def log_deploy(agent_id: str, env: str):
    async with BoboykaClient("http://localhost:7475") as boboyka:
        await boboyka.ingest_audit(
            agent_id=agent_id,
            event="deploy_completed",
            actor="ci_pipeline",
            metadata={"env": env, "version": "2.4.1"},
        )

        # Tail the last 10 audit events
        feed = await boboyka.audit_events(limit=10)
        for ev in feed.events:
            print(f"  [{ev.ingested_at_ms}] {ev.record_hash[:12]}…  ok={ev.dual_write_ok}")

asyncio.run(log_deploy("boboyka_builder", "production"))
