from sapixdb_agent import SapixClient

async def main():
    async with SapixClient("http://localhost:7475") as client:
        # Ingest
        resp = await client.boboyka_ingest("agent_health", {
            "agent_id":     "boboyka_builder",
            "status":       "healthy",
            "cpu_pct":      12.1,
            "memory_mb":    128,
            "checked_at_ms": 1747000000000,
        })
        print(resp["record_hash"])

        # Status
        status = await client.boboyka_status()
        print(status["total_events"])

        # Events feed
        events = await client.boboyka_events(limit=20, record_type="audit_log")
        print(events["events"])
