import asyncio
from sapixdb_connectors import ConnectorClient

async def main():
    async with ConnectorClient("http://localhost:7475") as hub:
        # --- Inbound: REST Bridge -----------------------------------------
        bridge = await hub.add_rest_bridge("IoT Bridge")
        print(f"Bridge id: {bridge.id}")

        # Push a record through it (simulates an external system)
        result = await hub.rest_push(
            bridge.id,
            {"sensor": "temp-7", "celsius": 22.4, "location": "rack-3"},
        )
        print(f"Written: {result.record_hash}")

        # --- Outbound: Webhook --------------------------------------------
        wh = await hub.add_webhook(
            "Ops alerts",
            url="https://hooks.slack.com/services/T00…",
            secret="xoxb-my-token",
        )
        print(f"Webhook id: {wh.id}")

        # --- Outbound: S3 ------------------------------------------------
        s3 = await hub.add_s3(
            "R2 archive",
            endpoint="https://account.r2.cloudflarestorage.com",
            bucket="sapixdb-archive",
            prefix="prod/records",
            auth_header="Bearer <token>",
        )

        # --- Inspect -------------------------------------------------------
        resp = await hub.list_connectors()
        print(f"Inbound: {resp.inbound_count}  Outbound: {resp.outbound_count}")
        for c in resp.connectors:
            status = "✓" if c.enabled else "✗"
            print(f"  {status} [{c.direction:<8}] {c.name:<20} events={c.event_count}")

        # --- Disable / delete ----------------------------------------------
        await hub.disable(wh.id)
        await hub.delete_connector(s3.id)

asyncio.run(main())
