import asyncio
from sapixdb_boboyka import BoboykaClient

async def on_build_complete(project_id: str, build_id: str, success: bool):
    async with BoboykaClient("http://localhost:7475") as boboyka:
        resp = await boboyka.ingest_build(
            project_id=project_id,
            build_id=build_id,
            status="succeeded" if success else "failed",
            agent_id="boboyka_builder",
            completed_at_ms=int(__import__("time").time() * 1000),
        )
        print(f"Recorded build {build_id}: {resp.record_hash[:16]}…")
        if not resp.dual_write.ok and resp.dual_write.enabled:
            print(f"  ⚠ Supabase mirror failed: {resp.dual_write.error}")

asyncio.run(on_build_complete("proj_abc", "bld_007", success=True))
