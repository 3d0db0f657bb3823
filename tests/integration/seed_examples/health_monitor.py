import asyncio
import psutil
from sapixdb_boboyka import BoboykaClient

async def report_health(agent_id: str):
    cpu = psutil.cpu_percent(interval=1)
    mem = psutil.virtual_memory().used // (1024 * 1024)
    status = "healthy" if cpu < 80 else "degraded"

    async with BoboykaClient("http://localhost:7475") as boboyka:
        await boboyka.ingest_health(
            agent_id=agent_id,
            status=status,
            cpu_pct=cpu,
            memory_mb=mem,
        )

asyncio.run(report_health("boboyka_builder"))
